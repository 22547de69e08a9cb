"""Real workers (``headway worker start`` subprocesses) running real flow processes.

On the embedded store and through a server on PostgreSQL (the two ends of the
backend matrix; the claim logic itself is covered on every backend by
``test_deployments.py``). Flows coordinate through marker files, so a test
knows that runs overlapped (or did not) from what they did, not from timing.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.core.deployments import DeploymentSpec
from headway.core.models import FlowRun
from headway.core.states import StateType

WORKER_BACKENDS = ("embedded-sqlite", "server-postgres")
#: Runs are leased for the default time: a worker that goes silent is tested by
#: moving the store's clock past the lease, not by a short lease a loaded machine
#: could outlast while its worker is alive.
LEASE = 30.0
CLI = [sys.executable, "-c", "from headway.cli import run; run()"]

FLOWS = """
import itertools
import os
import signal
import time
from pathlib import Path

from headway.flows import flow


@flow
def record(marker_dir: str, name: str, seconds: float = 0.2):
    d = Path(marker_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.pid").write_text(str(os.getpid()))
    (d / f"{name}.start").write_text(repr(time.time()))
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
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"worker-{len(started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*CLI, "worker", "start", "--pool", "pool", *STOP_AT_ONCE, *args],
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def wait_for(
    client: Any, run_ids: list[str], done: Callable[[FlowRun], bool], timeout: float = 40
) -> list[FlowRun]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [client.read_flow_run(r) for r in run_ids]
        if all(done(r) for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not done in time: {[(r.id, r.state) for r in runs]}")
        time.sleep(0.1)


def final(run: FlowRun) -> bool:
    return run.state.is_final


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
    got = wait_for(client, runs, final)
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
    got = wait_for(client, runs, final)
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
    got = wait_for(client, runs, final)
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
    wait_for(client, [run], lambda r: r.state.type is StateType.RUNNING)
    wait_until_file(markers / "stubborn.pid")
    pid = int((markers / "stubborn.pid").read_text())
    client.cancel_flow_run(run)
    (got,) = wait_for(client, [run], final)
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
    wait_for(client, [long_run], lambda r: r.state.type is StateType.RUNNING)
    wait_until_file(markers / "long.pid")
    pid = int((markers / "long.pid").read_text())
    queued = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "next", "seconds": 0.1}
    ).id
    first.kill()
    first.wait()
    # Nobody renews the run's lease any more: once past it, a sweep ends the run
    # CRASHED and gives its slot back (the store's clock moved, not waited on).
    clock_of(request).advance(LEASE + 1)
    client.sweep_runs()
    workers("--name", "survivor")
    crashed, done = wait_for(client, [long_run, queued], final)
    assert crashed.state.type is StateType.CRASHED
    assert done.state.type is StateType.COMPLETED
    assert "lease" in (crashed.state.message or "")
    # The deployment's slot came back: the queued run started after the crash.
    assert done.start_time is not None and crashed.end_time is not None
    assert done.start_time >= crashed.end_time
    wait_until(lambda: not pid_alive(pid))  # the run's process died with its worker


def wait_until_file(path: Path, timeout: float = 20) -> None:
    wait_until(path.exists, timeout)


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


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
    wait_for(client, [old], lambda r: r.state.type is StateType.RUNNING)
    new = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "new", "seconds": 0.1}
    ).id
    replaced, newest = wait_for(client, [old, new], final)
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
    first = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "first", "seconds": 3}
    ).id
    workers()
    wait_for(client, [first], lambda r: r.state.type is StateType.RUNNING)
    second = client.create_deployment_run(
        full, parameters={"marker_dir": str(markers), "name": "second", "seconds": 0.1}
    ).id
    kept, dropped = wait_for(client, [first, second], final)
    assert kept.state.type is StateType.COMPLETED
    assert dropped.state.type is StateType.CANCELLED
    assert "deployment:record/d" in (dropped.state.message or "")
    assert not (markers / "second.start").exists()  # it never ran
