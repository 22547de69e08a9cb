"""An httpx transport on the standard library's ``http.client``: kept-alive, one write per request.

The HttpClient speaks httpx (its requests, responses and errors), but on a
server a millisecond away the transport under httpx costs more than the
server's work: httpcore and h11 spend about 200 us of CPU a request, and send
the headers and the body in two writes, which the server then reads as two
wake-ups. This transport keeps connections open per host, sends each request
in one write with ``TCP_NODELAY``, reads the answer with ``http.client``'s
parser, and raises the httpx error classes the client's retry logic expects.
It reads whole answers (no streaming), which is all the client needs.

``HEADWAY_CLIENT_TRANSPORT=httpx`` puts httpx's own transport under the client
instead (:class:`HttpxTransport`): the same calls, the same error classes, for
a setup where this one misbehaves, and to measure what it saves.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

#: Connections idle for longer are closed rather than reused, before the
#: server's own keep-alive timeout (30 s) could close them under a request.
KEEPALIVE_EXPIRY_SECONDS = 4.0
#: Idle connections kept per host.
MAX_IDLE_PER_HOST = 64
#: What poll() reports on an idle connection the server has closed (or broken).
_CLOSED_EVENTS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


class Transport(Protocol):
    """What the HttpClient needs of a transport: one whole request and answer, and close."""

    def send(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        target: str,
        headers: Sequence[tuple[str, str | bytes]],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request and read its whole answer: status, headers and body."""
        ...

    def close(self) -> None:
        """Close every kept-alive connection."""
        ...


class _Connection(http.client.HTTPConnection):
    """HTTPConnection that sends a request's headers and body in one write."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if not isinstance(message_body, bytes):
            super()._send_output(message_body, encode_chunked)  # type: ignore[misc]
            return
        buffer: list[bytes] = self._buffer  # type: ignore[attr-defined]
        buffer.extend((b"", b""))
        message = b"\r\n".join(buffer) + message_body
        del buffer[:]
        self.send(message)


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    """The same over TLS."""


class KeepAliveTransport(httpx.BaseTransport):
    """Kept-alive HTTP/1.1 connections per (scheme, host, port), safe to share between threads."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[tuple[_Connection, float]]] = {}
        self._lock = threading.Lock()
        self._ssl_context: ssl.SSLContext | None = None
        self._closed = False
        #: Connections opened so far (a kept-alive pool opens one per concurrent caller).
        self.opened = 0

    def _take(
        self, key: tuple[str, str, int], connect_timeout: float | None
    ) -> tuple[_Connection, bool]:
        """An idle connection to ``key`` (and True), or a new one (and False)."""
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn, since = idle.pop()
                if now - since < KEEPALIVE_EXPIRY_SECONDS and _still_open(conn):
                    return conn, True
                conn.close()
        scheme, host, port = key
        self.opened += 1
        if scheme == "https":
            tls = _TLSConnection(host, port, timeout=connect_timeout, context=self.tls_context())
            return tls, False
        return _Connection(host, port, timeout=connect_timeout), False

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of https connections, made on first use (it takes ~0.2 s)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._closed or len(idle) >= MAX_IDLE_PER_HOST:
                conn.close()
                return
            idle.append((conn, time.monotonic()))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        headers = [
            (name.decode("latin-1"), value)
            for name, value in request.headers.raw
            if name.lower() not in (b"host", b"content-length")
        ]
        status, response_headers, content = self.send(
            request.method,
            url.scheme,
            url.host,
            url.port,
            url.raw_path.decode("ascii"),
            headers,
            request.read() or None,
            request.extensions.get("timeout", {}),
            request,
        )
        return httpx.Response(status, headers=response_headers, content=content, request=request)

    def send(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        target: str,
        headers: Sequence[tuple[str, str | bytes]],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
        request: httpx.Request | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request and read its whole answer: status, headers and body.

        The Host and Content-Length headers are added here. Failures raise the
        httpx error classes (with ``request`` when given).
        """
        key = (scheme, host, port or (443 if scheme == "https" else 80))
        # A kept-alive connection the server has since closed fails at once, before
        # the server saw anything: such a failure is tried once more on a new one.
        for _ in range(2):
            conn, reused = self._take(key, timeouts.get("connect"))
            if not reused:
                try:
                    conn.connect()
                except TimeoutError as exc:
                    conn.close()
                    raise httpx.ConnectTimeout(_text(exc), request=request) from exc
                except OSError as exc:
                    conn.close()
                    raise httpx.ConnectError(_text(exc), request=request) from exc
            try:
                conn.sock.settimeout(timeouts.get("write"))
                conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
            except (BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if reused:
                    continue
                raise httpx.WriteError(_text(exc), request=request) from exc
            except TimeoutError as exc:
                conn.close()
                raise httpx.WriteTimeout(_text(exc), request=request) from exc
            except OSError as exc:
                conn.close()
                raise httpx.WriteError(_text(exc), request=request) from exc
            break
        try:
            conn.sock.settimeout(timeouts.get("read"))
            response = conn.getresponse()
            content = response.read()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(_text(exc), request=request) from exc
        except (http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
            conn.close()
            raise httpx.RemoteProtocolError(
                "the server closed the connection without a whole answer", request=request
            ) from exc
        except http.client.HTTPException as exc:
            conn.close()
            raise httpx.RemoteProtocolError(_text(exc), request=request) from exc
        except OSError as exc:
            conn.close()
            raise httpx.ReadError(_text(exc), request=request) from exc
        if response.will_close:
            conn.close()
        else:
            self._give_back(key, conn)
        return response.status, response.getheaders(), content

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()


class HttpxTransport:
    """httpx's own transport (httpcore and h11) behind the same :class:`Transport` calls.

    Its kept-alive pool has the same bounds as :class:`KeepAliveTransport`'s.
    """

    def __init__(self) -> None:
        self._transport = httpx.HTTPTransport(
            limits=httpx.Limits(
                max_connections=None,
                max_keepalive_connections=MAX_IDLE_PER_HOST,
                keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS,
            )
        )

    def send(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        target: str,
        headers: Sequence[tuple[str, str | bytes]],
        body: bytes | None,
        timeouts: Mapping[str, float | None],
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request and read its whole answer; failures raise httpx's errors."""
        url = httpx.URL(scheme=scheme, host=host, port=port, raw_path=target.encode("ascii"))
        request = httpx.Request(
            method,
            url,
            headers=[(n, v if isinstance(v, str) else v.decode("latin-1")) for n, v in headers],
            content=body,
            extensions={"timeout": {"pool": timeouts.get("connect"), **timeouts}},
        )
        response = self._transport.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        return response.status_code, list(response.headers.multi_items()), content

    def close(self) -> None:
        """Close every kept-alive connection."""
        self._transport.close()


def _still_open(conn: _Connection) -> bool:
    """Whether an idle kept-alive connection may carry a request.

    An idle connection has nothing to read; if it is readable (or hung up, or in
    error), the server has closed it (or broken the protocol), and a request sent
    on it would be lost. ``poll()``, not ``select()``: select cannot watch a
    descriptor numbered 1024 or more, which a process with many files open has.
    """
    sock = conn.sock
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        poller = select.poll()
        poller.register(fd, _CLOSED_EVENTS)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
