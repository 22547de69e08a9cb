"""headway: Python workflows with exact, prompt, crash-safe concurrency control.

The public API is small and fixed; ``tests/unit/test_exported_members.py`` locks it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("headway")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
