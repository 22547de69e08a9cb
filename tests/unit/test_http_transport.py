"""The client's kept-alive transport against a real socket server on loopback.

What the HttpClient's retry logic relies on: connections are reused, a kept-alive
connection the server has closed is replaced without failing the request, and
each kind of failure raises the httpx error class that says whether the server
may have acted (connect errors: it did not; a lost answer: it may have).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from headway.client.transport import KeepAliveTransport

TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": 2.0}
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _read_request(conn: socket.socket) -> bytes:
    """One whole request (headers and a Content-Length body), or b'' at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@contextmanager
def serving(
    handle: Callable[[socket.socket, list[bytes]], None],
) -> Iterator[tuple[int, list[int], list[bytes]]]:
    """A loopback server calling ``handle(conn, requests)`` on each connection.

    Yields its port, a list growing by one per accepted connection, and the requests.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    connections: list[int] = []
    requests: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(1)
            threading.Thread(target=handle, args=(conn, requests), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], connections, requests
    finally:
        listener.close()


def answer_all(conn: socket.socket, requests: list[bytes]) -> None:
    with conn:
        while request := _read_request(conn):
            requests.append(request)
            conn.sendall(ANSWER)


def test_requests_share_one_kept_alive_connection_and_carry_their_body() -> None:
    transport = KeepAliveTransport()
    with serving(answer_all) as (port, connections, requests):
        for i in range(5):
            status, headers, body = transport.send(
                "POST", "http", "127.0.0.1", port, f"/api/v1/x?i={i}",
                [("Content-Type", "application/json")], b'{"n":%d}' % i, TIMEOUTS,
            )  # fmt: skip
            assert (status, body) == (200, b"{}")
            assert ("Content-Type", "application/json") in headers
    transport.close()
    assert len(connections) == 1
    assert len(requests) == 5
    first = requests[0]
    assert first.startswith(b"POST /api/v1/x?i=0 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first and b"\r\nContent-Length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"n":0}')


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    closed = threading.Semaphore(0)

    def one_answer_then_close(conn: socket.socket, requests: list[bytes]) -> None:
        with conn:
            requests.append(_read_request(conn))
            conn.sendall(ANSWER)  # keep-alive promised, then closed: as a restarted server does
        closed.release()

    transport = KeepAliveTransport()
    with serving(one_answer_then_close) as (port, connections, requests):
        for _ in range(3):
            status, _, _ = transport.send("GET", "http", "127.0.0.1", port, "/", [], None, TIMEOUTS)
            assert status == 200
            assert closed.acquire(timeout=5)  # closed while the client's connection sat idle
    transport.close()
    assert len(requests) == 3 and len(connections) == 3


def test_nobody_listening_is_a_connect_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(httpx.ConnectError):
        KeepAliveTransport().send("GET", "http", "127.0.0.1", port, "/", [], None, TIMEOUTS)


def test_a_server_that_hangs_up_without_answering_is_a_lost_answer() -> None:
    def hang_up(conn: socket.socket, requests: list[bytes]) -> None:
        requests.append(_read_request(conn))
        conn.close()

    with serving(hang_up) as (port, _, requests):
        with pytest.raises(httpx.RemoteProtocolError):
            KeepAliveTransport().send("POST", "http", "127.0.0.1", port, "/", [], b"{}", TIMEOUTS)
    assert requests and requests[0].endswith(b"{}")  # it was delivered: the server may have acted


def test_a_server_that_never_answers_times_out() -> None:
    release = threading.Event()

    def silent(conn: socket.socket, requests: list[bytes]) -> None:
        with conn:
            requests.append(_read_request(conn))
            release.wait(5)

    with serving(silent) as (port, _, _):
        with pytest.raises(httpx.ReadTimeout):
            KeepAliveTransport().send(
                "GET", "http", "127.0.0.1", port, "/", [], None, {**TIMEOUTS, "read": 0.2}
            )
        release.set()


def test_it_serves_httpx_requests_too() -> None:
    with serving(answer_all) as (port, _, requests):
        with httpx.Client(transport=KeepAliveTransport()) as client:
            answer = client.post(f"http://127.0.0.1:{port}/p", json={"a": 1})
    assert answer.status_code == 200 and answer.json() == {}
    assert requests[0].startswith(b"POST /p HTTP/1.1\r\n") and requests[0].endswith(b'{"a":1}')


def test_a_release_sent_again_after_a_lost_answer_is_not_taken_for_a_lost_lease() -> None:
    from headway.client.http import HttpClient
    from headway.settings import get_settings

    answers = [None, b'{"intact":false}']  # first: the server dies before answering

    def release_then_crash(conn: socket.socket, requests: list[bytes]) -> None:
        with conn:
            while request := _read_request(conn):
                requests.append(request)
                body = answers.pop(0)
                if body is None:
                    return  # carried out, answer lost: the connection just closes
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )

    with serving(release_then_crash) as (port, _, requests):
        client = HttpClient(get_settings({"HEADWAY_API_URL": f"http://127.0.0.1:{port}"}))
        # The second attempt finds the lease gone because the first released it.
        assert client.release_slots("0123456789abcdef") is True
        client.close()
    assert len(requests) == 2 and all(b"/slots/release" in r for r in requests)
