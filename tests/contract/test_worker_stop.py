"""Workers stop gracefully: real ``headway worker start`` processes, real signals.

On embedded SQLite and through a server on PostgreSQL (the two ends of the
backend matrix; the workers are subprocesses reaching the test's store).

SIGTERM stops claiming and lets the run going finish, with all its records;
a second SIGTERM cancels it (SIGTERM to the run, SIGKILL after the grace), and
it ends CANCELLED with its records. (A SIGKILLed worker's runs end CRASHED and
free their slots: test_deployments_worker.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.client.base import Client, get_client
from headway.concurrency.sync import concurrency
from headway.core.deployments import DeploymentSpec
from headway.core.models import FlowRun
from headway.core.states import StateType
from helpers.processes import CLI, pid_alive
from helpers.waiting import wait_until

# Tasks a process pool runs: importable by name in its processes (a sibling module).
TASKS = """
import os
import time
from pathlib import Path

from headway import task
from headway.concurrency.sync import concurrency


@task
def blocked(marker_dir, name="blocked"):
    with concurrency("api"):
        Path(marker_dir, name).write_text(str(os.getpid()))
        try:
            while not Path(marker_dir, "never").exists():  # Python: interruptible
                time.sleep(0.02)
        finally:
            Path(marker_dir, name + "-left").write_text("")
"""

FLOWS = """
import os
import time
from pathlib import Path

from headway import flow, get_run_logger, task
from headway.task_runners import ProcessPoolTaskRunner
from stop_tasks import blocked


def wait_for_file(path):
    # The flow's own pace: the test decides when it may go on.
    while not path.exists():
        time.sleep(0.02)


@task
def step(i):
    get_run_logger().info("step %d done", i)
    return i


@flow
def drained(marker_dir: str):
    total = step(0)
    Path(marker_dir, "started").write_text(str(os.getpid()))
    wait_for_file(Path(marker_dir, "go"))
    for i in range(1, 4):
        total += step(i)
    print("all steps done")
    return total


@task(tags=["db"])
def needs_db(marker_dir, i):
    Path(marker_dir, f"ran-{i}").write_text("")


@flow
def waits_for_db(marker_dir: str):
    futures = [needs_db.submit(marker_dir, i) for i in range(3)]
    Path(marker_dir, "submitted").write_text("")
    return [f.result() for f in futures]


@flow
def stopped(marker_dir: str):
    step(0)
    blocked.submit(marker_dir).result()


@flow(task_runner=ProcessPoolTaskRunner(2))
def stopped_in_processes(marker_dir: str):
    futures = [blocked.submit(marker_dir, f"blocked-{i}") for i in range(2)]
    return [f.result() for f in futures]
"""


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.client: Client = get_client()
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        self.log = tmp_path / "worker.log"
        flows = tmp_path / "flows.py"
        flows.write_text(FLOWS)
        (tmp_path / "stop_tasks.py").write_text(TASKS)
        self.client.create_work_pool("pool")
        for fn in ("drained", "stopped", "stopped_in_processes", "waits_for_db"):
            self.client.apply_deployment(
                DeploymentSpec(flow_name=fn, name="d", entrypoint=f"{flows}:{fn}", work_pool="pool")
            )
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log, "wb") as log:
            self.worker = subprocess.Popen(
                [*CLI, "worker", "start", "--pool", "pool", "--no-standby", *args],
                env=dict(os.environ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: b"started on pool" in self.log.read_bytes(),
            "the worker started",
            alive=self.worker,
            log=self.log,
        )
        return self.worker

    def logged(self, text: str) -> bool:
        return text.encode() in self.log.read_bytes()

    def run_of(self, deployment: str) -> str:
        return self.client.create_deployment_run(
            deployment, parameters={"marker_dir": str(self.markers)}
        ).id

    def final(self, run_id: str) -> FlowRun:
        wait_until(lambda: self.client.read_flow_run(run_id).state.is_final, "the run ended")
        return self.client.read_flow_run(run_id, with_task_runs=True)

    def worker_exit_code(self) -> int:
        assert self.worker is not None
        try:
            return self.worker.wait(90)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "the worker did not stop:\n" + self.log.read_text(errors="replace")[-3000:]
            ) from None


@pytest.fixture
def setup(backend_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if backend_name not in ("embedded-sqlite", "server-postgres"):
        pytest.skip("worker processes are tested on embedded-sqlite and server-postgres")
    request.getfixturevalue("client")  # the backend, its environment and default client
    made = Setup(tmp_path)
    try:
        yield made
    finally:
        if made.worker is not None and made.worker.poll() is None:
            made.worker.kill()
            made.worker.wait()


def test_sigterm_lets_the_run_finish_with_all_its_records(setup: Setup) -> None:
    worker = setup.start_worker("--cancel-grace", "10")
    run_id = setup.run_of("drained/d")
    started = setup.markers / "started"
    wait_until(lambda: started.exists() and started.read_text() != "", "the run started")
    run_pid = int(started.read_text())
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: setup.logged("stopping: no new runs"), "the worker began its drain")
    # A stopping worker no longer claims, but its run goes on (it was SIGKILLed
    # at once when the claim loop's thread ended).
    queued = setup.run_of("drained/d")
    assert pid_alive(run_pid)
    (setup.markers / "go").touch()
    assert setup.worker_exit_code() == 0
    run = setup.final(run_id)
    assert run.state.type is StateType.COMPLETED, run.state
    assert run.task_runs is not None
    assert sorted(t.state.type.value for t in run.task_runs) == ["COMPLETED"] * 4
    lines = [line.message for _, line in setup.client.read_logs(run_id)]
    assert [f"step {i} done" in " ".join(lines) for i in range(4)] == [True] * 4
    assert "all steps done" in lines
    # The run created during the drain was never claimed: another worker's.
    assert setup.client.read_flow_run(queued).state.type is StateType.SCHEDULED
    assert setup.logged("stopped")


def test_sigterm_twice_cancels_the_run_with_its_records(setup: Setup) -> None:
    setup.client.create_limit("api", 5)
    # A grace longer than the test waits: the run must end by itself, not be killed.
    worker = setup.start_worker("--cancel-grace", "600")
    run_id = setup.run_of("stopped/d")
    blocked = setup.markers / "blocked"
    wait_until(lambda: blocked.exists() and blocked.read_text() != "", "the second task started")
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: setup.logged("stopping: no new runs"), "the worker began its drain")
    assert setup.client.read_flow_run(run_id).state.type is StateType.RUNNING
    worker.send_signal(signal.SIGTERM)
    assert setup.worker_exit_code() == 0
    run = setup.final(run_id)
    assert run.state.type is StateType.CANCELLED, run.state
    # The reason is on record: the worker marked it before signalling it.
    cancelling = [s for s in setup.client.read_states(run_id) if s.type is StateType.CANCELLING]
    assert [s.message for s in cancelling] == ["its worker was stopped"]
    assert run.task_runs is not None
    states = {t.name.split("-")[0]: t.state.type for t in run.task_runs}
    assert states == {"step": StateType.COMPLETED, "blocked": StateType.CANCELLED}
    lines = " ".join(line.message for _, line in setup.client.read_logs(run_id))
    assert "step 0 done" in lines
    # The running task was interrupted (its `finally` ran) and gave its slot back.
    assert (setup.markers / "blocked-left").exists()
    assert setup.client.read_limit("api").active_slots == 0
    assert not pid_alive(int(blocked.read_text()))


def test_sigterm_twice_interrupts_tasks_in_a_process_pool(setup: Setup) -> None:
    setup.client.create_limit("api", 5)
    worker = setup.start_worker("--cancel-grace", "600")
    run_id = setup.run_of("stopped_in_processes/d")
    marks = [setup.markers / f"blocked-{i}" for i in range(2)]
    wait_until(lambda: all(m.exists() and m.read_text() for m in marks), "both tasks run")
    assert setup.client.read_limit("api").active_slots == 2
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: setup.logged("stopping: no new runs"), "the worker began its drain")
    worker.send_signal(signal.SIGTERM)
    assert setup.worker_exit_code() == 0
    run = setup.final(run_id)
    assert run.state.type is StateType.CANCELLED, run.state
    assert run.task_runs is not None
    assert [t.state.type for t in run.task_runs] == [StateType.CANCELLED] * 2
    assert all((setup.markers / f"blocked-{i}-left").exists() for i in range(2))
    assert setup.client.read_limit("api").active_slots == 0


def test_a_cancelled_runs_tasks_waiting_for_a_slot_never_start(setup: Setup) -> None:
    client = setup.client
    client.create_limit("tag:db", 1)
    setup.start_worker("--cancel-grace", "10")
    with concurrency("tag:db"):  # held (and renewed) here: the run's tasks must wait
        run_id = setup.run_of("waits_for_db/d")
        wait_until(lambda: len(client.inspect_limit("tag:db").waiters) == 3, "the three tasks wait")
        client.cancel_flow_run(run_id, "not needed any more")
        run = setup.final(run_id)
        assert client.inspect_limit("tag:db").waiters == ()
    assert run.state.type is StateType.CANCELLED, run.state
    assert run.task_runs is not None and len(run.task_runs) == 3
    for task_run in run.task_runs:
        assert task_run.state.type is StateType.CANCELLED, task_run.state
        history = [s.type for s in client.read_states(task_run.id)]
        assert history == [StateType.PENDING, StateType.CANCELLED], history
    assert sorted(p.name for p in setup.markers.iterdir()) == ["submitted"]
    assert client.read_limit("tag:db").active_slots == 0
