"""Real workers (``headway worker start`` subprocesses) running real flow processes.

On the embedded store and through a server on PostgreSQL (the two ends of the
backend matrix; the claim logic itself is covered on every backend by
``test_deployments.py``). Flows coordinate through marker files, so a test
knows that runs overlapped (or did not) from what they did, not from timing.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.core.deployments import DeploymentSpec
from headway.core.states import StateType
from helpers.processes import Processes, pid_alive
from helpers.waiting import wait_for_file, wait_for_runs, wait_until

WORKER_BACKENDS = ("embedded-sqlite", "server-postgres")
#: Runs are leased for the default time: a worker that goes silent is tested by
#: moving the store's clock past the lease, not by a short lease a loaded machine
#: could outlast while its worker is alive.
LEASE = 30.0

FLOWS = """
import itertools
import os
import signal
import time
from pathlib import Path

from headway.flows import flow


@flow
def record(marker_dir: str, name: str, seconds: float = 0.2, gate: str = ""):
    # Works for `seconds`, or with a `gate` until that file exists (the test's call).
    d = Path(marker_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.pid").write_text(str(os.getpid()))
    (d / f"{name}.start").write_text(repr(time.time()))
    if gate:
        while not Path(gate).exists():
            time.sleep(0.02)
    else:
        time.sleep(seconds)
    (d / f"{name}.end").write_text(repr(time.time()))


@flow
def rendezvous(marker_dir: str, name: str, expect: int):
    # Completes only if `expect` runs are alive at the same time.
    d = Path(marker_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / name).touch()
    deadline = time.time() + 20
    while len(list(d.iterdir())) < expect:
        if time.time() > deadline:
            raise RuntimeError("the other runs never ran alongside this one")
        time.sleep(0.05)


@flow
def stubborn(marker_dir: str, seconds: float = 60):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    d = Path(marker_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stubborn.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
"""


#: A stopped worker cancels its runs at once (no drain), killing them 0.5 s after SIGTERM.
STOP_AT_ONCE = ("--cancel-grace", "0.5", "--drain-seconds", "0")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    with Processes(tmp_path) as procs:
        yield lambda *args: procs.worker("--pool", "pool", *STOP_AT_ONCE, *args)


def backend_for(request: pytest.FixtureRequest, backend_name: str) -> tuple[Any, Any]:
    """The backend's client and a worker starter (workers stop before the backend does)."""
    if backend_name not in WORKER_BACKENDS:
        pytest.skip("worker processes are tested on embedded-sqlite and server-postgres")
    backend = request.getfixturevalue("backend")
    # Requested after the backend, so torn down before it.
    return backend.client, request.getfixturevalue("workers")


def clock_of(request: pytest.FixtureRequest) -> Any:
    """The clock the test's store (the embedded one, or its server's) decides expiry on."""
    return request.getfixturevalue("backend").clock


def setup(client: Any, tmp_path: Path, fn: str, **fields: Any) -> str:
    flows = tmp_path / "flows.py"
    flows.write_text(FLOWS)
    if not client.list_work_pools():
        client.create_work_pool("pool")
    spec = DeploymentSpec(
        flow_name=fn,
        name=fields.pop("name", "d"),
        entrypoint=f"{flows}:{fn}",
        work_pool="pool",
        **fields,
    )
    return str(client.apply_deployment(spec).full_name)


def test_overlap_by_default(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(client, tmp_path, "rendezvous")
    markers = str(tmp_path / "m")
    runs = [
        client.create_deployment_run(
            full, parameters={"marker_dir": markers, "name": f"r{i}", "expect": 3}
        ).id
        for i in range(3)
    ]
    workers()
    got = wait_for_runs(client, runs)
    # Each run completes only if all three were running at once: no limit, overlap.
    assert [r.state.type for r in got] == [StateType.COMPLETED] * 3


def test_enqueue_runs_in_order_without_overlap(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(client, tmp_path, "record", concurrency_limit=1)
    markers = tmp_path / "m"
    runs = [
        client.create_deployment_run(
            full, parameters={"marker_dir": str(markers), "name": f"r{i}", "seconds": 0.3}
        ).id
        for i in range(3)
    ]
    workers()
    got = wait_for_runs(client, runs)
    assert [r.state.type for r in got] == [StateType.COMPLETED] * 3
    spans = [
        (float((markers / f"r{i}.start").read_text()), float((markers / f"r{i}.end").read_text()))
        for i in range(3)
    ]
    # FIFO: in creation order; and each started only after the previous one ended.
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end
    assert all(r.run_count == 1 for r in got)


def test_two_workers_share_a_pool(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(client, tmp_path, "rendezvous")
    markers = str(tmp_path / "m")
    runs = [
        client.create_deployment_run(
            full, parameters={"marker_dir": markers, "name": f"r{i}", "expect": 2}
        ).id
        for i in range(2)
    ]
    workers("--limit", "1", "--name", "w1")
    workers("--limit", "1", "--name", "w2")
    got = wait_for_runs(client, runs)
    # Each worker runs one at a time: both completing means one ran on each.
    assert [r.state.type for r in got] == [StateType.COMPLETED] * 2
    assert all(r.run_count == 1 for r in got)
    names = {w.name for w in client.list_workers("pool")}
    assert {"w1", "w2"} <= names


def test_cancellation_sigterm_then_sigkill(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(client, tmp_path, "stubborn")
    markers = tmp_path / "m"
    run = client.create_deployment_run(full, parameters={"marker_dir": str(markers)}).id
    worker = workers()
    wait_for_runs(client, [run], lambda r: r.state.type is StateType.RUNNING)
    pid = int(wait_for_file(markers / "stubborn.pid", nonempty=True))
    client.cancel_flow_run(run)
    (got,) = wait_for_runs(client, [run])
    # It ignored SIGTERM: the worker killed it after the grace period.
    assert got.state.type is StateType.CANCELLED
    assert not pid_alive(pid)
    assert worker.poll() is None  # the worker itself goes on


def test_worker_killed_its_runs_crash_and_free_their_slots(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(client, tmp_path, "record", concurrency_limit=1)
    markers = tmp_path / "m"
    long_run = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "long", "seconds": 120}
    ).id
    first = workers("--name", "doomed")
    wait_for_runs(client, [long_run], lambda r: r.state.type is StateType.RUNNING)
    pid = int(wait_for_file(markers / "long.pid", nonempty=True))
    first.kill()
    first.wait()
    # Queued once the worker is gone: a live one could claim it first (to wait
    # for the slot there), and it would then crash with its worker too.
    queued = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "next", "seconds": 0.1}
    ).id
    # Nobody renews the run's lease any more: once past it, a sweep ends the run
    # CRASHED and gives its slot back (the store's clock moved, not waited on).
    clock_of(request).advance(LEASE + 1)
    client.sweep_runs()
    workers("--name", "survivor")
    crashed, done = wait_for_runs(client, [long_run, queued])
    assert crashed.state.type is StateType.CRASHED
    assert done.state.type is StateType.COMPLETED
    assert "lease" in (crashed.state.message or "")
    # The deployment's slot came back: the queued run started after the crash.
    assert done.start_time is not None and crashed.end_time is not None
    assert done.start_time >= crashed.end_time
    wait_until(
        lambda: not pid_alive(pid), "the run process gone"
    )  # the run's process died with its worker


def test_cancel_in_progress_replaces_the_running_run(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(
        client, tmp_path, "record", concurrency_limit=1, collision_strategy="CANCEL_IN_PROGRESS"
    )
    markers = tmp_path / "m"
    old = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "old", "seconds": 120}
    ).id
    workers()
    wait_for_runs(client, [old], lambda r: r.state.type is StateType.RUNNING)
    new = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "new", "seconds": 0.1}
    ).id
    replaced, newest = wait_for_runs(client, [old, new])
    # The newest wins: the running one is cancelled, the new one starts once it stopped.
    assert replaced.state.type is StateType.CANCELLED
    cancelling = [s for s in client.read_states(old) if s.type is StateType.CANCELLING]
    assert cancelling and f"superseded by newer run {new}" in (cancelling[0].message or "")
    assert newest.state.type is StateType.COMPLETED
    assert newest.start_time is not None and replaced.end_time is not None
    assert newest.start_time >= replaced.end_time
    assert not (markers / "old.end").exists()


def test_cancel_new_with_a_worker(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, workers = backend_for(request, backend_name)
    full = setup(client, tmp_path, "record", concurrency_limit=1, collision_strategy="CANCEL_NEW")
    markers = tmp_path / "m"
    gate = tmp_path / "go"
    # The first run holds the deployment's slot until the test opens its gate, so
    # the second is claimed while it runs however slowly the worker polls.
    first = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "first", "gate": str(gate)}
    ).id
    workers()
    wait_for_runs(client, [first], lambda r: r.state.type is StateType.RUNNING)
    second = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "second", "seconds": 0.1}
    ).id
    wait_for_runs(client, [second])
    gate.touch()
    kept, dropped = wait_for_runs(client, [first, second])
    assert kept.state.type is StateType.COMPLETED
    assert dropped.state.type is StateType.CANCELLED
    assert "deployment:record/d" in (dropped.state.message or "")
    assert not (markers / "second.start").exists()  # it never ran
