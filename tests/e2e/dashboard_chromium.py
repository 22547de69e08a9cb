"""Headless Chromium for the dashboard tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser downloads are never used: the tests launch the
system binary at :data:`CHROMIUM`. Without it (or without Playwright) the
dashboard tests skip on a developer machine and fail in CI (``CI=true``), so a
CI run can never pass them by not running them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def in_ci() -> bool:
    """Whether this run is CI, where a missing browser is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the dashboard tests must run)", pytrace=False)
    pytest.skip(reason)


def require_chromium() -> Path:
    """The Chromium binary; skips (fails with CI=true) when it or Playwright is missing."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"{CHROMIUM} is missing (install Debian's chromium: `make browser`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright for Python is not installed (pip install -e '.[dev]')")
    return CHROMIUM


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from the system binary."""
    return playwright.chromium.launch(
        executable_path=str(require_chromium()), headless=True, args=list(LAUNCH_ARGS)
    )
