"""The dashboard's files as the server sends them: all shipped, same origin only, cacheable."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from headway.server.runner import ServerThread
from headway.server.ui import CONTENT_TYPES, VERSION_MARK, load_assets
from headway.settings import get_settings

# A reference the browser would fetch from another origin: http(s)://... or //host/...
EXTERNAL = re.compile(
    r"""(?:(?:src|href|action|url|import|fetch)\s*[=(]|from)\s*["'`]?\s*(?:https?:)?//"""
)
# A module import: ``from "./js/api.js"`` (resolved against the importing file).
IMPORT = re.compile(r"""\bfrom\s+["']([^"']+)["']""")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home = tmp_path_factory.mktemp("dashboard-assets") / "headway-home"
    with ServerThread(get_settings({"HEADWAY_HOME": str(home)})) as running:
        yield running


def test_page_and_every_asset_it_names_are_served(server: ServerThread) -> None:
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert VERSION_MARK not in page.text

    named = re.findall(r'(?:src|href)="(/ui/[^"?]+)(?:\?v=([0-9a-f]+))?"', page.text)
    assert {path for path, _ in named} >= {"/ui/app.js", "/ui/app.css", "/ui/favicon.svg"}
    assert len({version for _, version in named}) == 1  # one release, one version
    # Every file the page names, and every module those import, is served.
    pending = [path for path, _ in named]
    served: set[str] = set()
    while pending:
        path = pending.pop()
        if path in served:
            continue
        served.add(path)
        asset = httpx.get(server.url + path)
        assert asset.status_code == 200, path
        suffix = "." + path.rpartition(".")[2]
        assert asset.headers["content-type"] == CONTENT_TYPES[suffix]
        # A browser that has it already is answered 304, without the body.
        again = httpx.get(server.url + path, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        if suffix == ".js":
            base = path.rpartition("/")[0]
            for target in IMPORT.findall(asset.text):
                assert target.startswith("."), f"{path} imports {target!r}"
                pending.append(posixpath.normpath(f"{base}/{target}"))
    assert "/ui/js/views/run.js" in served  # reached through the imports


@pytest.mark.parametrize(
    "path", ["/ui/missing.js", "/ui/../settings.py", "/ui/", "/ui/%2e%2e/app.py"]
)
def test_only_shipped_files_are_served(server: ServerThread, path: str) -> None:
    answer = httpx.get(server.url + path)
    assert answer.status_code == 404
    assert answer.json()["error"] in {"ObjectNotFound", "NotFound"}


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
