"""The dashboard's files as shipped: nothing from another origin; the browser check itself."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from headway.server.ui import load_assets

# A reference the browser would fetch from another origin: http(s)://... or //host/...
EXTERNAL = re.compile(
    r"""(?:(?:src|href|action|url|import|fetch)\s*[=(]|from)\s*["'`]?\s*(?:https?:)?//"""
)


def test_no_asset_refers_to_another_origin() -> None:
    for external in (
        'src="https://cdn.example/x.js"',
        "url(//fonts.example/f.woff)",
        "fetch(`http://x`",
        'import { x } from "https://esm.example/x.js";',
    ):
        assert EXTERNAL.search(external), external
    folder = resources.files("headway") / "ui"
    names = sorted(load_assets())
    assert {"index.html", "app.js", "app.css"} <= set(names)
    for name in names:
        text = (folder / name).read_text(encoding="utf-8")
        found = EXTERNAL.findall(text)
        assert not found, f"{name} refers to another origin: {found}"


def test_a_missing_browser_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dashboard_chromium

    monkeypatch.setattr(dashboard_chromium, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium is missing"):
        dashboard_chromium.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        dashboard_chromium.require_chromium()
