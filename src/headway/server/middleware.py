"""ASGI middleware: the API key check and the request body size limit (by route).

Both are plain ASGI (no per-request objects) because they run on every call,
and both answer with the same JSON error shape as :mod:`headway.server.errors`.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from starlette.routing import Match

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths anyone may call without the API key (the dashboard's page holds no data).
OPEN_PATHS = frozenset({"/health", "/"})
#: Path prefixes anyone may fetch: the dashboard's static assets.
OPEN_PREFIXES = ("/ui/",)
#: How many (method, path) pairs the body limit remembers as routed.
_ROUTED_CACHE = 4096


async def send_error(
    send: Send,
    status: int,
    detail: str,
    error: str,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer with ``{"detail", "error"}`` directly at the ASGI level."""
    body = json.dumps({"detail": detail, "error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Every path except :data:`OPEN_PATHS` needs ``Authorization: Bearer <key>``.

    Any of ``api_keys`` is accepted: during a key change the server takes the
    old key and the new one until every client sends the new one.
    """

    def __init__(self, app: ASGIApp, api_keys: Sequence[str]) -> None:
        if not api_keys:
            raise ValueError("ApiKeyMiddleware needs at least one key")
        self.app = app
        self._expected = tuple(f"Bearer {key}".encode() for key in api_keys)

    def _accepts(self, given: bytes) -> bool:
        # Constant time per key, and every key compared: the answer reveals
        # neither how much of a key matched nor which key it was.
        matched = False
        for expected in self._expected:
            matched |= hmac.compare_digest(given, expected)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        if given and self._accepts(given):
            await self.app(scope, receive, send)
            return
        await send_error(
            send,
            401,
            "missing or wrong API key (send Authorization: Bearer <HEADWAY_API_KEY>)",
            "Unauthorized",
            [(b"www-authenticate", b"Bearer")],
        )


class BodyLimitMiddleware:
    """Answer 413 to bodies over their route's limit, and 404/405 before reading one.

    ``limit`` applies to every route but those in ``route_limits`` (method and
    exact path: the batch routes), so a body is bounded by the route that will
    read it, never by how its path happens to end. A request that no route
    serves is refused before its body is read.
    """

    def __init__(
        self, app: ASGIApp, limit: int, route_limits: Mapping[tuple[str, str], int]
    ) -> None:
        self.app = app
        self.limit = limit
        self.route_limits = dict(route_limits)
        #: (method, path) pairs a route was found for: the hot routes are looked up once.
        self._routed: dict[tuple[str, str], bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        match = self._match(scope)
        if match is Match.NONE:
            await send_error(send, 404, "Not Found", "NotFound")
            return
        if match is Match.PARTIAL:
            await send_error(send, 405, "Method Not Allowed", "MethodNotAllowed")
            return
        limit = self.route_limits.get((scope["method"], scope["path"]), self.limit)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "invalid Content-Length", "BadRequest")
                    return
                if declared > limit:
                    await self._too_large(send, limit)
                    return
                break
        # Read the body here (the route reads it whole anyway) so that a body sent
        # without a length is cut off at the limit rather than buffered unbounded.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(chunks, None, receive), send)

    def _match(self, scope: Scope) -> Match:
        """Whether a route of the app serves this path (FULL), another method (PARTIAL), or none."""
        key = (scope["method"], scope["path"])
        if self._routed.get(key):
            return Match.FULL
        router = getattr(scope.get("app"), "router", None)
        if router is None:
            return Match.FULL  # not under a Starlette app: the app behind decides
        best = Match.NONE
        for route in router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                if len(self._routed) >= _ROUTED_CACHE:
                    self._routed.clear()  # paths with ids are many: keep the cache bounded
                self._routed[key] = True
                return match
            if match is Match.PARTIAL:
                best = match
        return best

    @staticmethod
    async def _too_large(send: Send, limit: int) -> None:
        await send_error(
            send, 413, f"request body larger than {limit} bytes", "RequestEntityTooLarge"
        )


def _replay(chunks: list[bytes], pending: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands out the buffered body first, then the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if pending is not None:
                return pending
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replay


#: A query parameter whose name says it holds a secret (``api_key=``, ``token=``, ...).
_SECRET_QUERY = re.compile(r"(?i)([?&][^=&\s]*(?:key|token|secret|passw|auth)[^=&\s]*=)[^&\s\"]*")


class RedactSecretsFilter(logging.Filter):
    """Hide the values of secret-looking query parameters in access log lines.

    The server never reads a key from the query string, but a client may send
    one there by mistake; the access log must not keep it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _SECRET_QUERY.sub(r"\1****", arg) if isinstance(arg, str) and "=" in arg else arg
                for arg in record.args
            )
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`RedactSecretsFilter` on the access logger (once)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecretsFilter) for f in target.filters):
        target.addFilter(RedactSecretsFilter())
