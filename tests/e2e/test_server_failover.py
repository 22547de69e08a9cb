"""A client naming two servers goes on through the other when one dies.

Two ``headway server``s on one PostgreSQL. A holder process names both
(``HEADWAY_API_URL=http://a,http://b``), takes the only slot of a limit and
keeps it, renewing its lease; a waiter process, naming both too, waits for the
slot in a request held open by the first server. The first server is killed
(SIGKILL). The holder must keep its lease through the second server (renewed
there: still held, by the same lease, well past several lease durations), the
waiter must keep its place and be granted the slot as soon as the holder lets
it go, and the holder's release must find its lease intact.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.client.http import HttpClient
from headway.server.runner import ServerProcess
from headway.settings import get_settings
from helpers.postgres import fresh_postgres
from helpers.processes import Processes
from helpers.waiting import wait_until

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

LEASE = 2.0

HOLDER = r"""
import json, os, sys, time
from headway.concurrency.sync import concurrency

ready, letgo, out = sys.argv[1:4]
with concurrency("failover", occupy=1) as held:
    lease = held.grant.lease_id
    open(ready, "w").close()
    while not os.path.exists(letgo):
        time.sleep(0.05)
    lost = held.lost
json.dump({"lease": lease, "lost": lost}, open(out, "w"))
"""

WAITER = r"""
import json, sys, time
from headway.concurrency.sync import concurrency

out = sys.argv[1]
asked = time.time()
with concurrency("failover", occupy=1, timeout_seconds=120):
    got = time.time()
json.dump({"waited": got - asked}, open(out, "w"))
"""


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_postgres(for_headway=False) as url:
        yield url


def test_a_client_naming_two_servers_keeps_its_lease_and_place_when_one_dies(
    database: str, tmp_path: Path, headway_home: Path
) -> None:
    env = {
        **os.environ,
        "HEADWAY_HOME": str(headway_home),
        "HEADWAY_DATABASE_URL": database.replace("postgresql://", "postgresql+psycopg://", 1),
        "HEADWAY_CONCURRENCY_LEASE_SECONDS": str(LEASE),
    }
    servers = [ServerProcess(env, log_path=tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        second = HttpClient(get_settings({"HEADWAY_API_URL": servers[1].url}))
        second.create_limit("failover", 1)
        client_env = {k: v for k, v in env.items() if k != "HEADWAY_DATABASE_URL"}
        # The first server first: every request of both clients goes there until it dies.
        client_env["HEADWAY_API_URL"] = f"{servers[0].url}, {servers[1].url}/"
        ready, letgo = tmp_path / "ready", tmp_path / "letgo"
        held_out, waited_out = tmp_path / "holder.json", tmp_path / "waiter.json"
        with Processes(tmp_path) as procs:
            holder = procs.start(
                [sys.executable, "-c", HOLDER, str(ready), str(letgo), str(held_out)],
                name="holder",
                env=client_env,
            )
            wait_until(ready.exists, "the holder has the slot", alive=holder)
            waiter = procs.start(
                [sys.executable, "-c", WAITER, str(waited_out)], name="waiter", env=client_env
            )

            def queued() -> bool:
                return len(second.inspect_limit("failover").waiters) == 1

            wait_until(queued, "the waiter queued", alive=waiter)
            [lease] = second.inspect_limit("failover").holders
            servers[0].kill()

            # Several lease durations later the holder still holds its lease
            # (renewed through the second server), and the waiter still waits.
            def renewed_past_its_first_expiry() -> bool:
                detail = second.inspect_limit("failover")
                assert [h.id for h in detail.holders] == [lease.id]
                assert len(detail.waiters) == 1, "the waiter lost its place"
                return (detail.holders[0].expires - lease.expires).total_seconds() > 2 * LEASE

            wait_until(renewed_past_its_first_expiry, "the lease renewed through the other server")
            assert holder.poll() is None and waiter.poll() is None
            letgo.touch()
            wait_until(waited_out.exists, "the waiter granted", alive=waiter)
            assert holder.wait(timeout=30) == 0, procs.output(holder)
            assert waiter.wait(timeout=30) == 0, procs.output(waiter)
        assert json.loads(held_out.read_text()) == {"lease": lease.id, "lost": False}
        assert "cannot be reached; going on through" in procs.output(holder)
        after = second.inspect_limit("failover")
        assert after.holders == () and after.waiters == ()
    finally:
        for server in servers:
            server.stop()
