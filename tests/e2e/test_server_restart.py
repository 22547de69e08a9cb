"""A server killed with SIGKILL and started again loses nothing.

Runs, their states and limits are in the store; a lease taken before the crash
is still honoured after it (nobody else gets its slots) until it expires, and
is then reaped by the restarted server's sweeper. A client calling during the
outage just waits: its requests are retried until the server is back.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.client.http import HttpClient
from headway.core.limits import SlotGrant, SlotWait
from headway.core.states import Completed, Running, StateType
from headway.server.runner import ServerProcess, free_port
from headway.settings import get_settings

ADMIN_URL = os.environ.get("HEADWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: The lease taken before the crash must outlive the kill and the restart (checked
#: below) with room to spare on a loaded machine, such as a parallel test run.
LEASE = 15.0


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(request: pytest.FixtureRequest, headway_home: Path) -> Iterator[dict[str, str]]:
    # A short default lease makes the server sweep every second.
    env = {
        **os.environ,
        "HEADWAY_HOME": str(headway_home),
        "HEADWAY_CONCURRENCY_LEASE_SECONDS": "4",
    }
    if request.param == "sqlite":
        yield env
        return
    try:
        import psycopg

        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}: {exc}")
    name = f"headway_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    env["HEADWAY_DATABASE_URL"] = f"{base}/{name}"
    try:
        yield env
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        pause.wait(0.05)


def test_sigkill_and_restart_loses_no_run_or_limit(store_env: dict[str, str]) -> None:
    port = free_port()
    server = ServerProcess(store_env, port=port).start()
    client = HttpClient(
        get_settings({**store_env, "HEADWAY_API_URL": server.url}), retry_seconds=60
    )
    try:
        run_ids = [str(uuid.uuid4()) for _ in range(3)]
        for run_id in run_ids:
            client.create_flow_run(id=run_id, name="r", flow_name="survivor", state=Running())
        client.set_flow_run_state(run_ids[0], Completed())
        client.create_limit("db", 2)
        grant = client.acquire_slots(["db"], 2, lease_seconds=LEASE)
        assert isinstance(grant, SlotGrant) and grant.lease_id is not None
        granted_at = time.monotonic()

        server.kill()
        # A call made while the server is down waits for it instead of failing.
        during: dict[str, Any] = {}

        def call_during_outage() -> None:
            during["runs"] = client.list_flow_runs(flow_name="survivor", limit=10)

        caller = threading.Thread(target=call_during_outage, daemon=True)
        caller.start()
        server = ServerProcess(store_env, port=port).start()
        caller.join(60)
        assert {r.id for r in during["runs"]} == set(run_ids)

        runs = {r.id: r for r in client.list_flow_runs(flow_name="survivor", limit=10)}
        assert runs[run_ids[0]].state.type is StateType.COMPLETED
        assert runs[run_ids[1]].state.type is StateType.RUNNING
        assert client.read_limit("db").limit == 2

        # The lease from before the crash still holds the slots...
        assert time.monotonic() - granted_at < LEASE, "the restart took longer than the lease"
        detail = client.inspect_limit("db")
        assert [h.id for h in detail.holders] == [grant.lease_id]
        assert isinstance(client.acquire_slots(["db"], 1), SlotWait)
        # ...until it expires unrenewed: then the restarted server reaps it.
        wait_until(lambda: client.read_limit("db").active_slots == 0, LEASE + 20)
        assert client.inspect_limit("db").holders == ()
        assert client.release_slots(grant.lease_id) is False
        again = client.acquire_slots(["db"], 2)
        assert isinstance(again, SlotGrant)
    finally:
        client.close()
        server.stop()
