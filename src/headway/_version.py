"""This headway's version, read from its installed metadata.

A module of its own so that the server and the CLI can ask for it without
importing the ``headway`` package's public API (the SDK, a layer above them).
"""

from __future__ import annotations

import functools


@functools.cache
def headway_version() -> str:
    """The installed distribution's version ("0.0.0" when run from a source tree)."""
    # Imported when asked: importlib.metadata costs a cold start ~35 ms, and
    # every CLI command imports this module.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("headway")
    except PackageNotFoundError:
        return "0.0.0"
