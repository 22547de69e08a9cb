"""The dashboard: ``/`` serves the page and ``/ui/<file>`` its assets, all from the package.

Everything the browser loads ships in ``headway/ui`` (no CDN, no font service):
the Content-Security-Policy sent with the page forbids any other origin, so a
stray external reference fails loudly instead of leaking requests. The page and
its assets hold no data and are open without the API key; every data call the
page makes goes to ``/api/v1`` with the key the user typed (kept in the
browser's sessionStorage and sent as ``Authorization: Bearer``).

The assets are read once when the app is built; each answer carries an ETag so
a browser revalidates cheaply, and the page names its assets with a version
query so a new release is never served from a stale cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from starlette.responses import Response

from headway.server.errors import error_response

#: Path prefix of the dashboard's assets (open without the API key).
UI_PREFIX = "/ui/"
#: Paths of the dashboard itself (open without the API key).
UI_PATHS = frozenset({"/"})

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

#: Only this origin: scripts, styles, images and API calls alike.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none';"
    " form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: Replaced in ``index.html`` by a digest of every asset (cache busting).
VERSION_MARK = "{{version}}"


@dataclass(frozen=True)
class Asset:
    """One file of the dashboard, ready to send."""

    body: bytes
    content_type: str
    etag: str


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in folder.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_dir():
            files.update(_walk(entry, f"{prefix}{entry.name}/"))
        elif "." + entry.name.rpartition(".")[2] in CONTENT_TYPES:
            files[prefix + entry.name] = entry.read_bytes()
    return files


def load_assets() -> dict[str, Asset]:
    """Every file under ``headway/ui`` by its path there; ``index.html`` versioned."""
    raw = _walk(resources.files("headway") / "ui")
    digest = hashlib.sha256()
    for name in sorted(raw):
        digest.update(name.encode())
        digest.update(raw[name])
    version = digest.hexdigest()[:12]
    assets: dict[str, Asset] = {}
    for name, body in raw.items():
        if name == "index.html":
            body = body.replace(VERSION_MARK.encode(), version.encode())
        suffix = "." + name.rpartition(".")[2]
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        assets[name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return assets


def _answer(asset: Asset, request: Request) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


def ui_router() -> APIRouter:
    """Routes serving the dashboard (``/`` and ``/ui/<file>``)."""
    assets = load_assets()
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_model=None)
    def dashboard(request: Request) -> Response:
        """The dashboard page (a single page; views are chosen by the URL fragment)."""
        page = assets.get("index.html")
        if page is None:
            return error_response(404, "the dashboard is not installed", "ObjectNotFound")
        return _answer(page, request)

    @router.get(UI_PREFIX + "{path:path}", response_model=None)
    def asset(path: str, request: Request) -> Response:
        """One asset of the dashboard; only files shipped in the package are served."""
        found = assets.get(path)
        if found is None:
            return error_response(404, f"no dashboard file {path!r}", "ObjectNotFound")
        return _answer(found, request)

    return router


def is_open_path(path: str) -> bool:
    """Whether ``path`` belongs to the dashboard itself (served without the API key)."""
    return path in UI_PATHS or path.startswith(UI_PREFIX)
