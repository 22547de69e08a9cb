"""A server killed with SIGKILL and started again loses nothing.

Runs, their states and limits are in the store; a lease taken before the crash
is still honoured after it (nobody else gets its slots) until it expires, and
is then reaped by the restarted server's sweeper. A client calling during the
outage just waits: its requests are retried until the server is back.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.client.http import HttpClient
from headway.core.limits import SlotGrant, SlotWait
from headway.core.states import Completed, Running, StateType
from headway.server.runner import ServerProcess, free_port
from headway.settings import get_settings
from helpers.postgres import fresh_postgres
from helpers.waiting import wait_until

#: The lease taken before the crash outlives the kill and the restart however slow
#: the machine; the test then renews it to run out in a second, to watch it reaped.
LEASE = 600.0


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
    with fresh_postgres() as url:
        env["HEADWAY_DATABASE_URL"] = url
        yield env


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
        detail = client.inspect_limit("db")
        assert [h.id for h in detail.holders] == [grant.lease_id]
        assert isinstance(client.acquire_slots(["db"], 1), SlotWait)
        # ...until it expires unrenewed (renewed once more, to a second from now):
        # then the restarted server's sweeper reaps it.
        assert client.renew_leases([grant.lease_id], lease_seconds=1) == []
        wait_until(lambda: client.read_limit("db").active_slots == 0, "the lease reaped")
        assert client.inspect_limit("db").holders == ()
        assert client.release_slots(grant.lease_id) is False
        again = client.acquire_slots(["db"], 2)
        assert isinstance(again, SlotGrant)
    finally:
        client.close()
        server.stop()
