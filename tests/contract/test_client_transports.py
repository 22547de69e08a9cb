"""The HttpClient keeps its contract on either transport under it.

``HEADWAY_CLIENT_TRANSPORT`` puts headway's own kept-alive transport (stdlib,
the default) or httpx's own under the client. Each test here runs on both, on
the server backends: slot pairs and held requests, error classes, paths and
query strings, batches, and how a request that failed is told apart (never
reached the server: retried, then StoreError; answer lost: retried only when
safe to repeat).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from headway import exceptions
from headway.client.http import HttpClient
from headway.client.transport import HttpxTransport, KeepAliveTransport
from headway.core.limits import SlotGrant, SlotWait
from headway.core.models import LogRecord
from headway.core.states import Running, StateType
from headway.exceptions import AnswerLost
from headway.settings import CLIENT_TRANSPORTS, get_settings

TRANSPORT_CLASSES = {"stdlib": KeepAliveTransport, "httpx": HttpxTransport}


@pytest.fixture(params=CLIENT_TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _client(env: dict[str, str], transport_name: str, retry_seconds: float = 0.5) -> HttpClient:
    settings = get_settings({**env, "HEADWAY_CLIENT_TRANSPORT": transport_name})
    client = HttpClient(settings, retry_seconds=retry_seconds)
    assert type(client.transport) is TRANSPORT_CLASSES[transport_name]
    return client


@pytest.fixture
def http(server_backend: Any, transport_name: str) -> Iterator[HttpClient]:
    """An HttpClient on ``transport_name`` to the backend's server."""
    client = _client(server_backend.env, transport_name)
    yield client
    client.close()


def _eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.01)


def test_slot_pairs_renewals_and_releases(http: HttpClient) -> None:
    http.create_limit("pairs", 2)
    for _ in range(20):
        grant = http.acquire_slots(["pairs"], 2, lease_seconds=60)
        assert isinstance(grant, SlotGrant) and grant.lease_id is not None
        assert http.renew_leases([grant.lease_id], 90) == []
        assert http.release_slots(grant.lease_id) is True
    assert http.release_slots(grant.lease_id) is False  # already given back
    assert http.renew_leases([grant.lease_id]) == [grant.lease_id]
    assert http.read_limit("pairs").active_slots == 0


def test_a_held_request_is_granted_when_the_slot_frees(
    http: HttpClient, server_backend: Any, transport_name: str
) -> None:
    http.create_limit("gate", 1)
    first = http.acquire_slots(["gate"], 1)
    assert isinstance(first, SlotGrant) and first.lease_id is not None
    other = _client(server_backend.env, transport_name)
    results: list[SlotGrant | SlotWait] = []
    waiting = threading.Thread(
        target=lambda: results.append(other.acquire_slots(["gate"], 1, timeout=60))
    )
    waiting.start()
    _eventually(lambda: len(http.inspect_limit("gate").waiters) == 1)
    assert http.release_slots(first.lease_id)
    waiting.join(60)
    assert len(results) == 1 and isinstance(results[0], SlotGrant)
    assert http.read_limit("gate").active_slots == 1
    # A request that times out leaves nothing queued.
    assert isinstance(http.acquire_slots(["gate"], 1, timeout=0.2), SlotWait)
    assert http.inspect_limit("gate").waiters == ()
    other.close()


def test_errors_come_back_as_the_same_classes(http: HttpClient) -> None:
    with pytest.raises(exceptions.ObjectNotFound):
        http.read_limit("missing")
    http.create_limit("once", 1)
    with pytest.raises(exceptions.ObjectAlreadyExists):
        http.create_limit("once", 1)
    with pytest.raises(exceptions.ValidationError):
        http.create_limit("negative", -1)
    with pytest.raises(exceptions.ValidationError):
        http.acquire_slots(["once"], 0)  # refused by the server's model: a 422
    with pytest.raises(exceptions.ObjectNotFound):
        http.read_flow_run(str(uuid.uuid4()))


def test_odd_names_paths_and_query_strings_round_trip(http: HttpClient) -> None:
    names = ["a/b", "q?x=1&y", "hash#tag", "space d", "é€🙂", "pool:p/q"]
    for name in names:
        http.create_limit(name, 3)
        assert http.read_limit(name).name == name
    assert sorted(limit.name for limit in http.list_limits()) == sorted(names)
    assert [limit.name for limit in http.list_limits(prefix="pool:")] == ["pool:p/q"]
    http.delete_limit("a/b")  # an empty 204 answer
    with pytest.raises(exceptions.ObjectNotFound):
        http.read_limit("a/b")


def test_runs_batches_and_repeated_query_parameters(http: HttpClient) -> None:
    run = http.create_flow_run(
        id=str(uuid.uuid4()), name="r", flow_name="f", state=Running(), parameters={"n": 1}
    )
    now = datetime.now(UTC)
    records = [
        LogRecord(run.id, None, 20, "INFO", "test", f"line {i} " + "x" * 100, now)
        for i in range(2_500)  # more than one batch of the client's
    ]
    http.write_logs(records)
    read = [r.message for _, r in http.read_logs(run.id)]
    assert read == [r.message for r in records]
    found = http.list_flow_runs(states=[StateType.RUNNING, StateType.PENDING], limit=5)
    assert [r.id for r in found] == [run.id]
    assert http.list_flow_runs(states=[StateType.COMPLETED]) == []


def test_a_wrong_key_is_a_configuration_error(server_backend: Any, transport_name: str) -> None:
    client = _client({**server_backend.env, "HEADWAY_API_KEY": "wrong"}, transport_name)
    with pytest.raises(exceptions.ConfigurationError, match="HEADWAY_API_KEY"):
        client.list_limits()
    client.close()


def test_an_unreachable_server_is_retried_then_a_store_error(transport_name: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = _client({"HEADWAY_API_URL": f"http://127.0.0.1:{port}"}, transport_name, 0.3)
    with pytest.raises(exceptions.StoreError, match="cannot reach the headway server"):
        client.list_limits()


def test_a_lost_answer_is_resent_only_when_safe(transport_name: str) -> None:
    """A server that reads each request and hangs up: delivered, never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    received: list[bytes] = []

    def hang_up_on_everyone() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                received.append(data)

    threading.Thread(target=hang_up_on_everyone, daemon=True).start()
    port = listener.getsockname()[1]
    client = _client({"HEADWAY_API_URL": f"http://127.0.0.1:{port}"}, transport_name, 0.3)
    try:
        # Not safe to repeat: sent once, and the caller is told the outcome is unknown.
        with pytest.raises(AnswerLost):
            client.create_limit("x", 1)
        assert len(received) == 1 and received[0].startswith(b"POST /api/v1/limits ")
        # Safe to repeat (a read): sent again until the retry window closes.
        with pytest.raises(exceptions.StoreError):
            client.list_limits()
        assert len(received) > 2
    finally:
        listener.close()
        client.close()
