"""Fixtures shared by every test: an isolated HEADWAY_HOME and a fresh default client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def headway_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own embedded store; nothing touches ~/.headway."""
    home = tmp_path / "headway-home"
    monkeypatch.setenv("HEADWAY_HOME", str(home))
    for var in ("HEADWAY_API_URL", "HEADWAY_DATABASE_URL", "HEADWAY_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    from headway.client.base import set_default_client

    old = set_default_client(None)
    try:
        yield home
    finally:
        current = set_default_client(old)
        if current is not None and current is not old:
            current.close()
