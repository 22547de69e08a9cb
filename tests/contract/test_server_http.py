"""What only the server adds: auth, body limits, error bodies, the API surface."""

from __future__ import annotations

import functools
import inspect
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway import exceptions
from headway.api.operation import Op, operations
from headway.client.base import Client
from headway.client.http import HttpClient
from headway.client.wire import API_PREFIX, error_from_response
from headway.core.states import Running
from headway.server.app import MAX_BODY_BYTES, create_app
from headway.server.runner import ServerThread
from headway.settings import get_settings

KEY = "s3cret-key-for-tests"


@pytest.fixture
def server(headway_home: Path) -> Iterator[ServerThread]:
    settings = get_settings({"HEADWAY_HOME": str(headway_home), "HEADWAY_API_KEY": KEY})
    with ServerThread(settings) as running:
        yield running


def _client(server: ServerThread, key: str | None = KEY) -> HttpClient:
    env = {"HEADWAY_HOME": str(server.settings.home), "HEADWAY_API_URL": server.url}
    if key is not None:
        env["HEADWAY_API_KEY"] = key
    return HttpClient(get_settings(env), retry_seconds=0.5)


def test_health_is_open_and_everything_else_needs_the_key(server: ServerThread) -> None:
    # httpx's default 5 s read timeout is a statement about the machine's load,
    # not the server: the first /openapi.json builds the document.
    get = functools.partial(httpx.get, timeout=60)
    health = get(server.url + "/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    for path in (API_PREFIX + "/flow_runs", "/openapi.json", "/docs"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            answer = get(server.url + path, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert answer.json()["error"] == "Unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
    ok = get(server.url + "/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    with pytest.raises(exceptions.ConfigurationError, match="HEADWAY_API_KEY"):
        _client(server, key="wrong").list_flow_runs()
    with pytest.raises(exceptions.ConfigurationError):
        _client(server, key=None).list_flow_runs()
    assert _client(server).list_flow_runs() == []


def _declare_only(server: ServerThread, method: str, path: str, length: int) -> bytes:
    """Send headers declaring a ``length`` body, none of it, and read the answer."""
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        return sock.recv(65536)


def test_unknown_paths_are_refused_before_their_body_is_read(server: ServerThread) -> None:
    # 60 MiB declared and never sent: an answer at all means it was not waited for.
    for path in ("/api/v1/nope/batch", "/batch", "/api/v1/flow_runs/x/batch"):
        assert _declare_only(server, "POST", path, 60 * 1024 * 1024).startswith(b"HTTP/1.1 404 "), (
            path
        )
    answer = _declare_only(server, "PUT", "/api/v1/logs/batch", 60 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 405 ")


def test_only_the_batch_routes_take_large_bodies(server: ServerThread) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    client = _client(server)
    client.create_limit("x", 1)
    client.close()
    # A limit may be named "x/batch": PATCH /limits/x/batch is its route, with the 1 MiB limit.
    big = {"limit": 2, "description": "y" * (MAX_BODY_BYTES + 10)}
    answer = httpx.patch(server.url + API_PREFIX + "/limits/x/batch", json=big, headers=auth)
    assert answer.status_code == 413
    assert _declare_only(server, "PATCH", "/api/v1/limits/x/batch", 2 * MAX_BODY_BYTES).startswith(
        b"HTTP/1.1 413 "
    )
    # The real batch routes still take more than the common limit.
    logs = [
        {"flow_run_id": str(uuid.uuid4()), "level": 20, "message": "m" * 1000, "timestamp": 0.0}
    ] * (2 * MAX_BODY_BYTES // 1000)
    answer = httpx.post(server.url + API_PREFIX + "/logs/batch", json=logs, headers=auth)
    assert answer.status_code != 413, answer.text


def test_body_limit_and_validation_errors(server: ServerThread) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    big = {"id": "x", "name": "n", "flow_name": "f", "state": {"type": "RUNNING"}}
    big["parameters"] = {"blob": "y" * (MAX_BODY_BYTES + 10)}
    answer = httpx.post(server.url + API_PREFIX + "/flow_runs", json=big, headers=auth)
    assert answer.status_code == 413
    assert answer.json()["error"] == "RequestEntityTooLarge"

    # Without a Content-Length (chunked), the limit still holds.
    def chunks() -> Iterator[bytes]:
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    chunked = httpx.post(server.url + API_PREFIX + "/flow_runs", content=chunks(), headers=auth)
    assert chunked.status_code == 413

    bad = {"id": "x" * 37, "name": "", "flow_name": "f", "state": {"type": "NOPE"}}
    answer = httpx.post(server.url + API_PREFIX + "/flow_runs", json=bad, headers=auth)
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "ValidationError"
    assert "id:" in body["detail"] and "state.type:" in body["detail"]
    assert "Traceback" not in answer.text
    unknown_field = {**big, "parameters": {}, "colour": "red"}
    answer = httpx.post(server.url + API_PREFIX + "/flow_runs", json=unknown_field, headers=auth)
    assert answer.status_code == 422 and "colour" in answer.json()["detail"]
    # Nothing was created by any refused request.
    assert _client(server).list_flow_runs() == []


def test_client_maps_bodies_back_to_the_same_classes() -> None:
    for cls in (
        exceptions.ObjectNotFound,
        exceptions.IllegalTransition,
        exceptions.ValidationError,
        exceptions.StoreError,
        exceptions.AcquireConcurrencySlotTimeoutError,
        exceptions.LeaseLostError,
    ):
        body = json.dumps({"detail": "why", "error": cls.__name__}).encode()
        error = error_from_response(cls.http_status, body)
        assert type(error) is cls
        assert str(error) == "why"
    unknown = error_from_response(502, b"<html>bad gateway</html>")
    assert type(unknown) is exceptions.ServerError
    assert "502" in str(unknown)


def test_unexpected_errors_answer_500_without_a_traceback(headway_home: Path) -> None:
    settings = get_settings({"HEADWAY_HOME": str(headway_home)})
    server = ServerThread(settings)
    app = server._server.config.app

    @app.get(API_PREFIX + "/explode")
    def explode() -> None:
        raise RuntimeError("secret internals at /srv/app.py line 12")

    with server:
        answer = httpx.get(server.url + API_PREFIX + "/explode")
        assert answer.status_code == 500
        assert answer.json() == {
            "detail": "internal server error (see the server's log)",
            "error": "ServerError",
        }
        assert "secret internals" not in answer.text
        client = _client(server, key=None)
        with pytest.raises(exceptions.ServerError, match="internal server error"):
            client.request("GET", "/explode")
        with pytest.raises(exceptions.ServerError, match="404"):
            client.request("GET", "/no-such-route")


def test_every_client_method_has_a_route() -> None:
    # Each declared operation is sent by HttpClient through its declaration
    # (the Op descriptor) or by a method of its own (the few that retry or
    # batch); the methods that are not operations (close, stop_retrying) are
    # HttpClient's own too, not the protocol's defaults (but attempt_here)...
    ops = operations(Client)
    assert len(ops) >= 55
    own = 0
    for op in ops:
        member = inspect.getattr_static(HttpClient, op.name)
        if not isinstance(member, Op):
            assert op.name in vars(HttpClient), op.name
            own += 1
    assert own < len(ops) / 4
    names = {op.name for op in ops}
    others = {
        name
        for name, member in inspect.getmembers(Client, inspect.isfunction)
        if not name.startswith("_") and name not in names
    }
    assert others == {"attempt_here", "close", "stop_retrying"}
    for name in ("close", "stop_retrying"):
        assert getattr(HttpClient, name) is not getattr(Client, name), name
    # A server is always a round trip away: nothing is attempted on the caller's thread.
    assert HttpClient(get_settings({}), api_url="http://127.0.0.1:9").attempt_here(
        lambda: 1 / 0
    ) == (False, None)
    # ...and every route it may call is documented in the OpenAPI schema.
    spec = create_app(get_settings({"HEADWAY_HOME": "/nonexistent"})).openapi()
    paths = set(spec["paths"])
    assert "/health" in paths
    api = {p for p in paths if p != "/health"}
    assert api and all(p.startswith(API_PREFIX + "/") for p in api)
    for op in ops:
        assert API_PREFIX + op.path.replace(":path", "") in api, op.name


def test_unreachable_server_is_a_store_error(headway_home: Path) -> None:
    # A port bound but never listening: connections are refused, and no other
    # process (a parallel test's server) can take it meanwhile.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        settings = get_settings({"HEADWAY_HOME": str(headway_home), "HEADWAY_API_URL": url})
        client = HttpClient(settings, retry_seconds=0.3)
        with pytest.raises(exceptions.StoreError, match="cannot reach"):
            client.create_flow_run(id=str(uuid.uuid4()), name="r", flow_name="f", state=Running())


def test_batches_are_split_by_count_and_size() -> None:
    from headway.client import wire

    records = [{"i": i, "pad": "x" * 100} for i in range(5000)]
    bodies = list(wire._batches(records))
    decoded = [json.loads(b)["records"] for b in bodies]
    assert [r["i"] for chunk in decoded for r in chunk] == list(range(5000))
    assert all(len(chunk) <= wire.BATCH_RECORDS for chunk in decoded)
    big = [{"pad": "y" * 1_000_000} for _ in range(10)]
    sized = list(wire._batches(big))
    assert len(sized) > 1
    assert all(len(b) <= wire.BATCH_BYTES + 1_000_100 for b in sized)


def test_api_url_names_one_server_or_several() -> None:
    settings = get_settings({"HEADWAY_HOME": "/nonexistent"})
    client = HttpClient(settings, api_url=" http://a:4200/ ,https://b.example/base/")
    assert client.server_url == "http://a:4200"
    assert [s.url for s in client._servers] == ["http://a:4200", "https://b.example/base"]
    assert client._servers[1].path == "/base" + API_PREFIX
    for bad in ("ftp://a", "http://a:4200,not a url", ",", "http://a:99999"):
        with pytest.raises(exceptions.ConfigurationError, match="HEADWAY_API_URL"):
            HttpClient(settings, api_url=bad)


def test_a_request_goes_on_through_the_next_server(headway_home: Path) -> None:
    # The first server named is down (its port refuses connections): the
    # request goes through the second at once, and later requests stay there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
        settings = get_settings({"HEADWAY_HOME": str(headway_home)})
        with ServerThread(settings) as server:
            client = HttpClient(settings, api_url=f"{down},{server.url}", retry_seconds=0.3)
            client.create_limit("db", 2)
            assert client.server_url == server.url
            assert client.read_limit("db").limit == 2
            alone = HttpClient(settings, api_url=down, retry_seconds=0.3)
            with pytest.raises(exceptions.StoreError, match="cannot reach"):
                alone.read_limit("db")
