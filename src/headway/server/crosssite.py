"""Refusing cross-site requests to a server that has no API key.

A keyless server trusts whoever can reach it, which on a laptop means every
local process, but also every web page the user visits: a browser sends a
"simple" cross-site POST (``text/plain``, form-encoded, no body at all) without
asking first, and a hostile DNS name that re-binds to 127.0.0.1 makes the
browser treat the server as that page's own origin. So, with no key set:

- a state-changing request (any method but GET, HEAD, OPTIONS) must say
  ``Content-Type: application/json``: a browser sends that cross-site only after
  a CORS preflight, which this server never grants;
- the ``Host`` header must name the server by a loopback address, ``localhost``
  (or a ``*.localhost`` name), the address it binds, or a name listed in
  ``HEADWAY_SERVER_ALLOWED_HOSTS`` (``*`` accepts any): a rebound DNS name is
  none of these;
- a browser's ``Origin``, when sent, must be the server's own.

Refusals answer 403 (415 for the content type) with the server's JSON error
shape, before the body is read. A server with an API key skips this guard: a
page cannot learn the key, and requests without it are refused anyway.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from headway.server.middleware import ASGIApp, Receive, Scope, Send, send_error

#: Methods a browser may send cross-site and that change nothing here.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Bind addresses that name no host in particular.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def host_name(host: str) -> str:
    """``host`` of a Host header value (``name``, ``name:port``, ``[v6]:port``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host  # a bare IPv6 address (no port possible without brackets)


def is_loopback_name(name: str) -> bool:
    """Whether ``name`` (a host, no port) can only mean this machine."""
    if name == "localhost" or name.endswith(".localhost"):
        return True  # browsers resolve these to loopback themselves (RFC 6761)
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class CrossSiteGuard:
    """ASGI middleware refusing cross-site and rebound requests (see the module)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str], bind_host: str = "") -> None:
        self.app = app
        names = {host_name(h) for h in allowed_hosts if h.strip()}
        self._any_host = "*" in names
        if host_name(bind_host) not in _WILDCARDS:
            names.add(host_name(bind_host))
        self._allowed = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Liveness holds nothing a page could want, and probes reach it by any name.
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        host = origin = content_type = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        refusal = self._refusal(scope["method"], host, origin, content_type)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        await send_error(
            send, status, detail, "UnsupportedMediaType" if status == 415 else "Forbidden"
        )

    def _refusal(
        self, method: str, host: str | None, origin: str | None, content_type: str | None
    ) -> tuple[int, str] | None:
        # A request without Host (HTTP/1.0) comes from no browser: nothing to rebind.
        if host is not None and not self._host_allowed(host_name(host)):
            return 403, (
                f"host {host!r} is not allowed: this server has no API key, so it answers"
                " only to loopback names and HEADWAY_SERVER_ALLOWED_HOSTS"
            )
        if origin is not None and not _same_origin(origin, host):
            return 403, f"cross-origin request from {origin!r} refused (no API key is set)"
        if method not in SAFE_METHODS and not _is_json(content_type):
            return 415, "send Content-Type: application/json (required without an API key)"
        return None

    def _host_allowed(self, name: str) -> bool:
        return self._any_host or name in self._allowed or is_loopback_name(name)


def _same_origin(origin: str, host: str | None) -> bool:
    # Browsers send "null" from sandboxed frames and file: pages: never the server's own.
    if host is None or origin == "null":
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return netloc.lower() == host.strip().lower()


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
