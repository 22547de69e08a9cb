"""A server without an API key refuses what a web page or a rebound DNS name could send.

Each request here is one a browser sends without asking the server first (a
"simple" request: text/plain or form-encoded body, or none), or one that a
hostile name re-bound to 127.0.0.1 carries in its Host header. The server must
refuse it before acting, while its own clients (HttpClient, the dashboard's
JSON calls) go on working. With an API key set nothing changes.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.client.http import HttpClient
from headway.core.limits import SlotGrant
from headway.server.runner import ServerThread
from headway.settings import get_settings

ACQUIRE = "/api/v1/slots/acquire"
ACQUIRE_BODY = json.dumps({"names": ["db"], "slots": 1}).encode()


def _server(home: Path, **env: str) -> ServerThread:
    settings = get_settings({"HEADWAY_HOME": str(home), **env})
    return ServerThread(settings).start()


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[ServerThread]:
    server = _server(tmp_path, HEADWAY_SERVER_ALLOWED_HOSTS="headway.internal")
    try:
        yield server
    finally:
        server.stop()


def _send(
    server: ServerThread,
    method: str,
    path: str,
    body: bytes | None = None,
    **headers: str,
) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {"Host": f"{server.host}:{server.port}", **headers}
        for name, value in sent.items():
            conn.putheader(name.replace("_", "-"), value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else {}
    finally:
        conn.close()


def _held(server: ServerThread) -> float:
    return float(_send(server, "GET", "/api/v1/limits/db")[1]["active_slots"])  # type: ignore[arg-type]


def _create_db_limit(server: ServerThread) -> None:
    body = json.dumps({"name": "db", "limit": 5}).encode()
    status, answer = _send(server, "POST", "/api/v1/limits", body, Content_Type="application/json")
    assert status in (200, 201), answer


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"],
)
def test_a_simple_cross_site_post_is_refused(
    keyless: ServerThread, content_type: str | None
) -> None:
    _create_db_limit(keyless)
    headers = {} if content_type is None else {"Content_Type": content_type}
    status, answer = _send(keyless, "POST", ACQUIRE, ACQUIRE_BODY, **headers)
    assert status == 415, answer
    assert _held(keyless) == 0
    # Routes that take no body too (a form can post nothing at all).
    status, _ = _send(keyless, "POST", "/api/v1/limits/db/reset", None, **headers)
    assert status == 415


def test_json_posts_are_served(keyless: ServerThread) -> None:
    _create_db_limit(keyless)
    status, answer = _send(
        keyless, "POST", ACQUIRE, ACQUIRE_BODY, Content_Type="application/json; charset=utf-8"
    )
    assert status == 200, answer
    assert _held(keyless) == 1


@pytest.mark.parametrize("host", ["evil.example", "evil.example:4200", "127.0.0.1.evil.example"])
def test_a_rebound_host_is_refused(keyless: ServerThread, host: str) -> None:
    _create_db_limit(keyless)
    # Reads too: a rebound page could read every run otherwise.
    assert _send(keyless, "GET", "/api/v1/limits", Host=host)[0] == 403
    status, _ = _send(
        keyless, "POST", ACQUIRE, ACQUIRE_BODY, Host=host, Content_Type="application/json"
    )
    assert status == 403
    assert _held(keyless) == 0


@pytest.mark.parametrize(
    "host", ["localhost:4200", "[::1]:4200", "127.0.0.2", "app.localhost", "headway.internal:9"]
)
def test_loopback_and_configured_hosts_are_served(keyless: ServerThread, host: str) -> None:
    assert _send(keyless, "GET", "/api/v1/limits", Host=host)[0] == 200


def test_health_answers_any_host(keyless: ServerThread) -> None:
    assert _send(keyless, "GET", "/health", Host="0.0.0.0:4200")[0] == 200


def test_a_foreign_origin_is_refused(keyless: ServerThread) -> None:
    _create_db_limit(keyless)
    own = f"http://{keyless.host}:{keyless.port}"
    for origin in ("http://evil.example", "null", f"http://localhost:{keyless.port}"):
        status, _ = _send(
            keyless, "POST", ACQUIRE, ACQUIRE_BODY, Origin=origin, Content_Type="application/json"
        )
        assert status == 403, origin
    assert _held(keyless) == 0
    status, _ = _send(
        keyless, "POST", ACQUIRE, ACQUIRE_BODY, Origin=own, Content_Type="application/json"
    )
    assert status == 200


def test_the_python_client_works_against_a_keyless_server(keyless: ServerThread) -> None:
    client = HttpClient(keyless.settings, api_url=keyless.url)
    try:
        client.create_limit("db", 2)
        grant = client.acquire_slots(["db"], 1)
        assert isinstance(grant, SlotGrant)
        assert client.renew_leases([grant.lease_id]) == []
        assert client.release_slots(grant.lease_id)
        client.reset_limit("db")  # a POST without a body
        client.delete_limit("db")  # a DELETE without a body
        assert client.list_limits() == []
    finally:
        client.close()


def test_with_a_key_nothing_changes(tmp_path: Path) -> None:
    server = _server(tmp_path, HEADWAY_API_KEY="k3y")
    try:
        auth = {"Authorization": "Bearer k3y"}
        body = json.dumps({"name": "db", "limit": 5}).encode()
        created = _send(
            server, "POST", "/api/v1/limits", body, Content_Type="application/json", **auth
        )
        assert created[0] in (200, 201)
        # A text/plain body and a foreign Host are served as before: the key decides.
        status, answer = _send(
            server, "POST", ACQUIRE, ACQUIRE_BODY, Content_Type="text/plain", **auth
        )
        assert status == 200, answer
        assert _send(server, "GET", "/api/v1/limits", Host="evil.example", **auth)[0] == 200
        assert _send(server, "POST", ACQUIRE, ACQUIRE_BODY, Content_Type="text/plain")[0] == 401
    finally:
        server.stop()
