"""Faults injected into real processes; what must be true afterwards.

- A flow-run process SIGKILLed while it holds a global limit slot (from
  ``concurrency()``), a tag slot (its task's tag) and its deployment's slot:
  all three can be taken again within 2 x the lease, and the run ends CRASHED;
  the next run of the deployment then gets all three.
- SQLite busy: another process holds the store's write lock for seconds;
  writers wait and succeed once it lets go, readers are not blocked at all, and
  the file passes ``PRAGMA integrity_check``.
- PostgreSQL restarted under load (a private cluster started for the test, so
  the shared one other tests use is never touched): client processes keep
  taking and giving back slots through two servers; none of them fails, an
  outside observer never sees the limit exceeded, and no lease id is granted
  twice.

(A worker SIGKILLed with runs in flight: tests/contract/test_deployments_worker.py;
a holder frozen past its lease: tests/stress/test_crash_recovery.py; a server
SIGKILLed under load: tests/stress/test_reliability_restart.py.)
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.client.base import Client, get_client
from headway.core.deployments import DeploymentSpec
from headway.core.limits import SlotGrant
from headway.core.models import FlowRun
from headway.core.states import Completed, Running, StateType
from helpers.processes import Processes
from helpers.waiting import wait_for_file, wait_until

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


# -- a flow-run process killed while holding three kinds of slots --------------------------
LEASE = 3.0

FLOWS = """
import os
import time
from pathlib import Path

from headway.concurrency.sync import concurrency
from headway.flows import flow
from headway.tasks import task


@task(tags=["io"])
def inner(marker: str, seconds: float) -> None:
    with concurrency("gcl"):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(seconds)


@flow
def hold(marker: str, seconds: float = 600) -> None:
    inner(marker, seconds)
"""


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Any]]:
    monkeypatch.setenv("HEADWAY_CONCURRENCY_LEASE_SECONDS", str(LEASE))
    with Processes(tmp_path) as procs:
        yield lambda: procs.worker("--pool", "pool")


def run_of(client: Client, run_id: str) -> FlowRun:
    return client.read_flow_run(run_id)


def test_a_killed_flow_run_gives_back_its_global_tag_and_deployment_slots(
    worker: Callable[[], Any], tmp_path: Path
) -> None:
    client = get_client()
    flows = tmp_path / "flows.py"
    flows.write_text(FLOWS)
    client.create_limit("gcl", 1)
    client.create_limit("tag:io", 1)
    client.create_work_pool("pool")
    deployment = client.apply_deployment(
        DeploymentSpec(
            flow_name="hold",
            name="d",
            entrypoint=f"{flows}:hold",
            work_pool="pool",
            concurrency_limit=1,
        )
    )
    limits = ["gcl", "tag:io", f"deployment:{deployment.full_name}"]
    first_marker = tmp_path / "first.pid"
    first = client.create_deployment_run(
        deployment.full_name, parameters={"marker": str(first_marker)}
    ).id
    worker()
    victim = int(wait_for_file(first_marker, nonempty=True))
    held = {name: client.inspect_limit(name).holders for name in limits}
    assert all(len(h) == 1 for h in held.values()), held
    assert held["gcl"][0].holder.pid == victim
    assert held["tag:io"][0].holder.pid == victim
    assert run_of(client, first).state.type is StateType.RUNNING

    os.kill(victim, signal.SIGKILL)
    # All three slots can be taken again within 2 x the lease, without any admin.
    grant = client.acquire_slots(limits, 1, timeout=2 * LEASE)
    assert isinstance(grant, SlotGrant), grant
    assert client.release_slots(grant.lease_id)  # type: ignore[arg-type]
    wait_until(
        lambda: run_of(client, first).state.is_final, "the killed run's final state", timeout=30
    )
    crashed = run_of(client, first)
    assert crashed.state.type is StateType.CRASHED, crashed.state
    # The next run of the deployment gets all three and completes.
    second_marker = tmp_path / "second.pid"
    second = client.create_deployment_run(
        deployment.full_name, parameters={"marker": str(second_marker), "seconds": 0}
    ).id
    wait_until(lambda: run_of(client, second).state.is_final, "the next run", timeout=60)
    assert run_of(client, second).state.type is StateType.COMPLETED
    assert second_marker.exists()
    for name in limits:
        assert client.read_limit(name).active_slots == 0, name


# -- SQLite busy -----------------------------------------------------------------------------
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("CREATE TABLE IF NOT EXISTS outside_writer (x)")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""
#: How long the other process keeps the write lock.
BUSY_SECONDS = 2.0


def test_sqlite_busy_writers_wait_and_succeed_readers_go_on(headway_home: Path) -> None:
    client = get_client()
    client.create_limit("db", 1)
    before = client.create_flow_run(
        id="10000000-0000-4000-8000-000000000000", name="r", flow_name="f", state=Running()
    )
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(headway_home / "headway.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdin is not None
    try:
        assert locker.stdout.readline().strip() == "locked"
        done: dict[str, Any] = {}
        errors: list[BaseException] = []
        ready = threading.Barrier(5)

        def call(label: str, fn: Callable[[], Any]) -> None:
            try:
                ready.wait(30)
                done[label] = fn()
            except BaseException as exc:
                errors.append(exc)

        def hold_a_slot() -> bool:
            from headway.concurrency.sync import concurrency

            with concurrency("db", timeout_seconds=60):
                return True

        writers = {
            "create limit": lambda: client.create_limit("new", 2),
            "take a slot": hold_a_slot,
            "new run": lambda: client.create_flow_run(
                id="20000000-0000-4000-8000-000000000000",
                name="r2",
                flow_name="f",
                state=Running(),
            ),
            "finish run": lambda: client.set_flow_run_state(before.id, Completed()),
        }
        threads = [
            threading.Thread(target=call, args=item, daemon=True) for item in writers.items()
        ]
        for t in threads:
            t.start()
        ready.wait(30)
        # Readers are not blocked by a writer (WAL): this answers while the lock is held.
        assert client.read_flow_run(before.id).state.type is StateType.RUNNING
        assert client.read_limit("db").limit == 1
        # The writers cannot have finished: the lock is still held for BUSY_SECONDS.
        threading.Event().wait(BUSY_SECONDS)
        assert not done and not errors, (done, errors)
        locker.stdin.write("go\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "released"
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert set(done) == set(writers)
    finally:
        if locker.poll() is None:
            locker.kill()
        locker.wait(10)
    assert client.read_limit("new").limit == 2
    assert client.read_flow_run(before.id).state.type is StateType.COMPLETED
    assert client.read_limit("db").active_slots == 0
    conn = sqlite3.connect(headway_home / "headway.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


# -- PostgreSQL restarted under load ---------------------------------------------------------
def test_postgres_restarted_under_load_no_client_fails_no_duplicate_grant(
    headway_home: Path,
) -> None:
    """A short run of benchmarks/bench_reliability_faults.py (its own private cluster)."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the PostgreSQL server binaries and root (for initdb) are needed in CI")
        pytest.skip("needs the PostgreSQL server binaries and root (to run initdb as postgres)")
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_reliability_faults.py"),
            "postgres-restart",
            "--processes",
            "2",
            "--threads",
            "2",
            "--seconds",
            "5",
            "--restarts",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HEADWAY_HOME": str(headway_home)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["restarts"] == 1
    assert seen["failed_processes"] == 0, seen["errors"]
    assert seen["violations"] == 0
    assert seen["duplicate_lease_ids"] == 0
    assert seen["acquisitions"] == seen["observer_entries"] > 20
    # Grants went on after the restart, not only before it.
    assert seen["acquisitions_after_restart"] > 0
    assert seen["active_slots_at_end"] == 0 and seen["holders_at_end"] == 0
