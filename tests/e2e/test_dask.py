"""DaskTaskRunner on a real LocalCluster of 2 worker processes.

One cluster serves the module (starting one costs seconds); each test's flow
reaches it by address, and its workers adopt the test's own HEADWAY_* settings
with every task. Two tests let the runner start and close its own cluster.
Dask is a dev dependency: without it these tests skip, except in CI.
Cross-process facts (how many tasks hold a slot at once, which process ran
what) are observed through small files under the test's tmp_path.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.processes import pid_alive
from helpers.waiting import wait_for_file, wait_until

if os.environ.get("CI") != "true":
    pytest.importorskip("distributed")

from headway import flow, get_run_logger, task
from headway.client.base import Client, get_client, set_default_client
from headway.concurrency.sync import concurrency
from headway.context import get_flow_run_context
from headway.core.states import StateType
from headway.exceptions import TaskRunTimeout
from headway.task_runners import DaskTaskRunner

S = StateType


# -- the cluster -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scheduler_address() -> Iterator[str]:
    import dask
    from distributed import LocalCluster

    # As the runner does for its own cluster: a dead worker fails its task at once.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0"
        )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def runner(address: str) -> DaskTaskRunner:
    return DaskTaskRunner(address=address)


# -- cross-process observation ----------------------------------------------------------------
def observe(path: str, delta: int) -> None:
    """Add ``delta`` to the count in ``path`` and keep its peak (under a file lock)."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        parts = fh.read().split()
        current, peak = (int(parts[0]), int(parts[1])) if parts else (0, 0)
        current += delta
        fh.seek(0)
        fh.truncate()
        fh.write(f"{current} {max(peak, current)}")


def peak_of(path: Path) -> tuple[int, int]:
    current, peak = path.read_text().split()
    return int(current), int(peak)


def flow_run_id() -> str:
    ctx = get_flow_run_context()
    assert ctx is not None
    return ctx.flow_run_id


# -- tasks ------------------------------------------------------------------------------------
@task
def double(x: int) -> tuple[int, int]:
    if x == 7:
        get_run_logger().info("seven seen on %d", os.getpid())
    return x * 2, os.getpid()


@task
def total(pairs: list[tuple[int, int]]) -> int:
    return sum(value for value, _ in pairs)


@task
def client_kind() -> str:
    return type(get_client()).__name__


@task(log_prints=True)
async def triple_async(x: int) -> int:
    print(f"async {x} in {os.getpid()}")
    return x * 3


@task
def returns_a_lock() -> Any:
    return threading.Lock()  # cannot be pickled: it cannot travel back


@task(timeout_seconds=0.3)
def too_slow() -> None:
    threading.Event().wait(2)


@task(tags=["db"])
def runs_only_if_granted(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))


@task(tags=["db"])
def tagged(counter: str, hold: float) -> int:
    observe(counter, +1)
    try:
        time.sleep(hold)  # the work being limited
    finally:
        observe(counter, -1)
    return os.getpid()


@task
def coded(counter: str, hold: float) -> int:
    with concurrency("gpu"):
        observe(counter, +1)
        try:
            time.sleep(hold)
        finally:
            observe(counter, -1)
    return os.getpid()


@task(retries=2)
def flaky(marker: str) -> str:
    attempts = Path(marker)
    seen = int(attempts.read_text()) if attempts.exists() else 0
    attempts.write_text(str(seen + 1))
    if seen < 2:
        raise ValueError(f"attempt {seen + 1} fails")
    return f"ok after {seen + 1}"


@task(retries=1)
def always_fails() -> None:
    raise KeyError("never works")


@task
def after(value: Any) -> str:
    return f"got {value}"


@task(tags=["kill"], retries=1)
def victim(marker_dir: str) -> str:
    return _first_attempt_hangs(marker_dir)


@task(tags=["kill"])
def victim_no_retry(marker_dir: str) -> str:
    return _first_attempt_hangs(marker_dir)


def _first_attempt_hangs(marker_dir: str) -> str:
    pid_file = Path(marker_dir) / "pid"
    if not pid_file.exists():
        pid_file.write_text(str(os.getpid()))
        threading.Event().wait(60)  # killed long before this
        return "not killed"
    return f"survived in {os.getpid()}"


@task(tags=["kill"])
def takes_the_slot_again() -> int:
    return os.getpid()


# -- the tests --------------------------------------------------------------------------------
def test_two_hundred_tasks_complete_with_records(scheduler_address: str) -> None:
    @flow(task_runner=runner(scheduler_address))
    def two_hundred() -> tuple[str, list[tuple[int, int]], int, str, list[int]]:
        pairs = double.map(range(200))
        summed = total.submit(pairs)
        kind = client_kind.submit(wait_for=[summed])
        tripled = triple_async.map(range(3))
        return flow_run_id(), pairs.result(), summed.result(), kind.result(), tripled.result()

    run_id, pairs, summed, kind, tripled = two_hundred()
    assert tripled == [0, 3, 6]
    assert [value for value, _ in pairs] == [2 * i for i in range(200)]
    assert summed == sum(2 * i for i in range(200))
    assert kind == "Orchestrator"
    pids = {pid for _, pid in pairs}
    assert os.getpid() not in pids
    assert len(pids) == 2  # both worker processes ran tasks

    client = get_client()
    assert client.read_flow_run(run_id).state.type is S.COMPLETED
    runs = client.read_task_runs(run_id)
    assert len(runs) == 205
    assert all(r.state.type is S.COMPLETED and r.run_count == 1 for r in runs)
    assert sorted(r.name for r in runs if r.name.startswith("double-")) == sorted(
        f"double-{i}" for i in range(200)
    )
    for r in runs[:3] + runs[-2:]:
        assert [s.type for s in client.read_states(r.id)] == [S.PENDING, S.RUNNING, S.COMPLETED]
    seven = next(r for r in runs if r.name == "double-7")
    lines = [line for _, line in client.read_logs(run_id) if line.task_run_id == seven.id]
    assert any(line.message.startswith("seven seen on ") for line in lines)
    printed = [line.message for _, line in client.read_logs(run_id) if line.message[:6] == "async "]
    assert sorted(m.split(" in ")[0] for m in printed) == ["async 0", "async 1", "async 2"]


@pytest.fixture
def server_client(headway_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A real server on a loopback port; this process and the workers use it."""
    from headway.server.runner import ServerThread
    from headway.settings import get_settings

    with ServerThread(get_settings()) as server:
        monkeypatch.setenv("HEADWAY_API_URL", server.url)
        old = set_default_client(None)
        client = get_client()
        try:
            yield client
        finally:
            set_default_client(old)
            client.close()


def test_limits_hold_across_workers_through_the_server(
    scheduler_address: str, server_client: Client, tmp_path: Path
) -> None:
    server_client.create_limit("tag:db", 2)
    server_client.create_limit("gpu", 1)
    db_counter, gpu_counter = tmp_path / "db", tmp_path / "gpu"

    @flow(task_runner=runner(scheduler_address))
    def limited() -> tuple[str, list[int], list[int], str]:
        db = tagged.map([str(db_counter)] * 10, 0.15)
        gpu = coded.map([str(gpu_counter)] * 6, 0.1)
        return flow_run_id(), db.result(), gpu.result(), client_kind.submit().result()

    run_id, db_pids, gpu_pids, kind = limited()
    assert kind == "HttpClient"  # the workers report through the server
    current, peak = peak_of(db_counter)
    assert current == 0 and 1 <= peak <= 2, peak
    current, peak = peak_of(gpu_counter)
    assert current == 0 and peak == 1, peak
    assert len(set(db_pids) | set(gpu_pids)) == 2  # the limits held across both workers
    assert server_client.read_limit("tag:db").active_slots == 0
    assert server_client.read_limit("gpu").active_slots == 0
    runs = server_client.read_task_runs(run_id)
    assert len(runs) == 17 and all(r.state.type is S.COMPLETED for r in runs)
    assert all(r.tags == ("db",) for r in runs if r.name.startswith("tagged-"))


def test_failing_task_is_retried_and_recorded(scheduler_address: str, tmp_path: Path) -> None:
    marker = tmp_path / "flaky-attempts"

    @flow(task_runner=runner(scheduler_address))
    def failing() -> tuple[str, Any, Any, Any]:
        ok = flaky.submit(str(marker))
        bad = always_fails.submit()
        downstream = after.submit(bad)
        slow = too_slow.submit()
        lock = returns_a_lock.submit()
        downstream.wait()
        slow.wait()
        lock.wait()
        return flow_run_id(), ok.result(), bad.state, downstream.state, slow.state, lock.state

    run_id, ok, bad_state, downstream_state, slow_state, lock_state = failing()
    assert lock_state.type is S.FAILED
    assert "cannot be sent back from the Dask worker" in lock_state.message
    assert slow_state.type is S.FAILED
    with pytest.raises(TaskRunTimeout, match=r"timed out after 0\.3 s"):
        slow_state.result()
    assert ok == "ok after 3"
    assert bad_state.type is S.FAILED
    with pytest.raises(KeyError, match="never works"):
        bad_state.result()
    assert downstream_state.type is S.CANCELLED and downstream_state.name == "UpstreamFailed"

    client = get_client()
    runs = {r.name: r for r in client.read_task_runs(run_id)}
    assert runs["flaky-0"].state.type is S.COMPLETED and runs["flaky-0"].run_count == 3
    history = client.read_states(runs["flaky-0"].id)
    assert [(s.type, s.name) for s in history] == [
        (S.PENDING, "Pending"),
        (S.RUNNING, "Running"),
        (S.SCHEDULED, "AwaitingRetry"),
        (S.RUNNING, "Retrying"),
        (S.SCHEDULED, "AwaitingRetry"),
        (S.RUNNING, "Retrying"),
        (S.COMPLETED, "Completed"),
    ]
    assert runs["always_fails-0"].state.type is S.FAILED
    assert runs["always_fails-0"].run_count == 2
    assert runs["after-0"].state.type is S.CANCELLED
    assert runs["returns_a_lock-0"].state.type is S.FAILED
    messages = [line.message for _, line in client.read_logs(run_id)]
    assert any(
        m.startswith("Attempt 1 of 3 failed (ValueError: attempt 1 fails)") for m in messages
    )
    assert any(m.startswith("Finished in state Failed: KeyError") for m in messages)


def _kill_when_running(marker_dir: Path, client: Client, name: str) -> int:
    """Wait until the task's first attempt runs (in the store too), then SIGKILL its worker."""
    pid = int(wait_for_file(marker_dir / "pid", nonempty=True))

    def running() -> bool:
        ctx_runs = [r for r in _all_task_runs(client) if r.name == name]
        return bool(ctx_runs) and ctx_runs[0].state.type is S.RUNNING

    wait_until(running, f"{name} running")
    os.kill(pid, signal.SIGKILL)
    return pid


def _all_task_runs(client: Client) -> list[Any]:
    runs = client.list_flow_runs(limit=5)
    return [t for r in runs for t in client.read_task_runs(r.id)]


def test_worker_killed_mid_task(scheduler_address: str, tmp_path: Path) -> None:
    client = get_client()
    client.create_limit("tag:kill", 1)

    def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread, box

    # With a retry left, the death is a failed attempt: the run goes on elsewhere.
    retried_dir = tmp_path / "retried"
    retried_dir.mkdir()

    @flow(task_runner=runner(scheduler_address))
    def with_retry() -> tuple[str, Any]:
        return flow_run_id(), victim.submit(str(retried_dir)).result()

    thread, box = run_in_thread(with_retry)
    killed = _kill_when_running(retried_dir, client, "victim-0")
    thread.join(60)
    assert not thread.is_alive() and "error" not in box, box
    run_id, value = box["value"]
    assert value.startswith("survived in ") and value != f"survived in {killed}"
    [run] = client.read_task_runs(run_id)
    assert run.state.type is S.COMPLETED and run.run_count == 2
    history = client.read_states(run.id)
    assert [s.type for s in history] == [
        S.PENDING,
        S.RUNNING,
        S.SCHEDULED,
        S.RUNNING,
        S.COMPLETED,
    ]
    assert history[2].name == "AwaitingRetry"
    assert "Dask worker running it died" in (history[2].message or "")
    assert client.read_limit("tag:kill").active_slots == 0

    # Without one, the run ends CRASHED; its slot comes back for the next task.
    crashed_dir = tmp_path / "crashed"
    crashed_dir.mkdir()

    @flow(task_runner=runner(scheduler_address))
    def without_retry() -> tuple[str, Any, int]:
        doomed = victim_no_retry.submit(str(crashed_dir))
        doomed.wait()
        return flow_run_id(), doomed.state, takes_the_slot_again.submit().result()

    thread, box = run_in_thread(without_retry)
    killed = _kill_when_running(crashed_dir, client, "victim_no_retry-0")
    thread.join(60)
    assert not thread.is_alive() and "error" not in box, box
    run_id, state, next_pid = box["value"]
    assert state.type is S.CRASHED and "Dask worker running it died" in state.message
    assert next_pid != killed
    runs = {r.name: r for r in client.read_task_runs(run_id)}
    assert runs["victim_no_retry-0"].state.type is S.CRASHED
    assert runs["victim_no_retry-0"].run_count == 1
    assert runs["takes_the_slot_again-0"].state.type is S.COMPLETED
    assert client.read_limit("tag:kill").active_slots == 0


def test_own_local_cluster_lives_as_long_as_the_flow_run(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    @flow(
        task_runner=DaskTaskRunner(
            cluster_kwargs={"n_workers": 1, "threads_per_worker": 2, "dashboard_address": ":0"}
        )
    )
    def own_cluster() -> list[int]:
        ctx = get_flow_run_context()
        assert ctx is not None
        dask_runner = ctx.task_runner
        assert isinstance(dask_runner, DaskTaskRunner)
        seen["cluster"] = dask_runner.cluster
        seen["processes"] = all(w.process is not None for w in dask_runner.cluster.workers.values())
        return [pid for _, pid in double.map(range(20)).result()]

    pids = set(own_cluster())
    assert seen["processes"]
    assert os.getpid() not in pids and len(pids) == 1
    assert seen["cluster"].status.name == "closed"
    for pid in pids:  # the worker processes are gone with the flow run
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_interrupted_flow_stops_its_own_workers_at_once(tmp_path: Path) -> None:
    marker_dir = tmp_path / "marker"
    marker_dir.mkdir()

    @flow(
        task_runner=DaskTaskRunner(
            cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"}
        )
    )
    def interrupted() -> None:
        seen["flow_run_id"] = flow_run_id()
        seen["hanging"] = victim_no_retry.submit(str(marker_dir))
        wait_for_file(marker_dir / "pid", nonempty=True)
        raise KeyboardInterrupt  # Ctrl-C while the task runs

    seen: dict[str, Any] = {}
    with pytest.raises(KeyboardInterrupt):
        interrupted()
    worker_pid = int((marker_dir / "pid").read_text())
    # The task would hang for a minute: its worker was stopped, not waited for.
    wait_until(lambda: not pid_alive(worker_pid), "the Dask worker stopped", timeout=10)
    assert seen["hanging"].state.type is S.CANCELLED
    client = get_client()
    assert client.read_flow_run(seen["flow_run_id"]).state.type is S.CANCELLED
    [run] = client.read_task_runs(seen["flow_run_id"])
    assert run.state.type is S.CANCELLED


def test_importing_task_runners_never_imports_dask() -> None:
    script = (
        "import sys\n"
        "import headway.task_runners as tr\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
        "runner = tr.DaskTaskRunner(address='tcp://127.0.0.1:1')\n"
        "assert 'distributed' not in sys.modules\n"
        "print(type(runner).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "DaskTaskRunner"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": ""}, "address must be"),
        ({"address": "tcp://h:1", "cluster_kwargs": {"n_workers": 1}}, "only to the LocalCluster"),
        ({"cluster_kwargs": [1]}, "cluster_kwargs must be a mapping"),
        ({"env": {"PATH": "/bin"}}, "only set HEADWAY_"),
        ({"env": {"HEADWAY_HOME": 1}}, "must be strings"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    from headway.exceptions import ValidationError

    with pytest.raises(ValidationError, match=message):
        DaskTaskRunner(**kwargs)


def test_settings_travel_as_environment() -> None:
    from headway._engine.dask import settings_env
    from headway.settings import get_settings

    env = dict(
        settings_env(
            get_settings(
                {
                    "HEADWAY_HOME": "/srv/hw",
                    "HEADWAY_API_URL": "http://10.0.0.5:4200",
                    "HEADWAY_LOG_PRINTS": "yes",
                    "HEADWAY_CONCURRENCY_LEASE_SECONDS": "12.5",
                }
            )
        )
    )
    assert env["HEADWAY_HOME"] == "/srv/hw"
    assert env["HEADWAY_API_URL"] == "http://10.0.0.5:4200"
    assert env["HEADWAY_LOG_PRINTS"] == "true"
    assert env["HEADWAY_CONCURRENCY_LEASE_SECONDS"] == "12.5"
    assert env["HEADWAY_DATABASE_URL"] == "" and env["HEADWAY_LOGGING_LEVEL"] == ""
    # What the workers read back is what the flow had.
    assert get_settings({k: v for k, v in env.items() if v}) == get_settings(
        {
            "HEADWAY_HOME": "/srv/hw",
            "HEADWAY_API_URL": "http://10.0.0.5:4200",
            "HEADWAY_LOG_PRINTS": "yes",
            "HEADWAY_CONCURRENCY_LEASE_SECONDS": "12.5",
        }
    )


def test_a_cancelled_flows_task_waiting_on_a_remote_worker_never_runs(
    scheduler_address: str, tmp_path: Path
) -> None:
    # The flow's process ends; its task waits on for a tag slot on a Dask worker
    # at an address (Dask cannot stop it there). It must never be granted.
    client = get_client()
    client.create_limit("tag:db", 1)
    seen: dict[str, str] = {}
    marker = tmp_path / "ran"
    with concurrency("tag:db"):  # the slot is taken, and renewed, by someone else

        @flow(task_runner=runner(scheduler_address))
        def cancelled_while_its_task_waits() -> None:
            seen["flow"] = flow_run_id()
            seen["task"] = runs_only_if_granted.submit(str(marker)).task_run_id
            wait_until(lambda: bool(get_client().inspect_limit("tag:db").waiters))
            raise KeyboardInterrupt  # Ctrl-C: the flow run ends CANCELLED

        with pytest.raises(KeyboardInterrupt):
            cancelled_while_its_task_waits()

        def refused() -> bool:
            events = client.read_events(run_id=seen["task"]).events
            return any(e.kind == "slot.refused" for e in events)

        # The wait on the worker was withdrawn with the flow run, and its request refused.
        wait_until(refused)
        assert client.inspect_limit("tag:db").waiters == ()
    assert client.read_flow_run(seen["flow"]).state.type is S.CANCELLED
    assert client.read_limit("tag:db").active_slots == 0
    assert not marker.exists()
    assert client.read_task_run(seen["task"]).state.type is S.CANCELLED
    assert S.RUNNING not in [s.type for s in client.read_states(seen["task"])]


def test_a_task_of_an_ended_flow_run_never_starts_on_a_worker(tmp_path: Path) -> None:
    # A task Dask starts after its flow's process is gone (cancelled, killed):
    # what a worker runs (called here directly) finds the run ended and stops.
    import uuid
    from types import SimpleNamespace

    from headway._engine.dask import run_on_worker
    from headway._engine.dask.payload import _Payload
    from headway.core.states import Cancelled, Pending, Running

    client = get_client()
    flow_run = str(uuid.uuid4())
    client.create_flow_run(id=flow_run, name="r", flow_name="f", state=Running())
    client.set_flow_run_state(flow_run, Cancelled(message="stop it"))
    marker = tmp_path / "ran"
    queued = SimpleNamespace(task=runs_only_if_granted.with_options(tags=()), client=client)
    spec = DaskTaskRunner(address="tcp://127.0.0.1:1")._spec(queued)  # type: ignore[arg-type]
    task_run = str(uuid.uuid4())
    payload = _Payload(
        task_run, "t-0", flow_run, time.time(), Pending(), 0, (str(marker),), {}, False
    )
    outcome = run_on_worker(spec, payload)
    assert [s.type for s in outcome.states] == [S.CANCELLED]
    assert "its flow run is CANCELLED" in (outcome.states[0].message or "")
    assert not marker.exists()


# -- an external cluster: `dask scheduler` and `dask worker` processes -------------------------
CANCELLED_FLOW = """
import os
import sys
import time
from pathlib import Path

from headway import flow, task
from headway.concurrency.sync import concurrency
from headway.context import get_flow_run_context
from headway.task_runners import DaskTaskRunner

MARKS = Path(sys.argv[2])


@task
def holds_api() -> None:
    with concurrency("api"):
        (MARKS / "holding").write_text(str(os.getpid()))
        try:
            while True:  # pure Python: interrupted at its next bytecode
                time.sleep(0.02)
        finally:
            (MARKS / "left").write_text("")


@task(tags=["db"])
def needs_db(i: int) -> None:
    (MARKS / f"ran-{i}").write_text("")


@flow(task_runner=DaskTaskRunner(address=sys.argv[1]))
def etl() -> None:
    ctx = get_flow_run_context()
    (MARKS / "flow").write_text(ctx.flow_run_id)
    futures = [holds_api.submit()] + [needs_db.submit(i) for i in range(2)]
    for f in futures:
        f.wait()


etl()
"""


@pytest.fixture
def dask_cli_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and a worker (3 threads), each its own `dask` process; the address."""
    bin_dir = Path(sys.executable).parent
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    log = open(tmp_path / "dask.log", "wb")  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen(
            [
                bin_dir / "dask",
                "scheduler",
                "--port",
                "0",
                "--dashboard-address",
                ":0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    try:
        wait_for_file(scheduler_file, nonempty=True, timeout=60)
        wait_until(lambda: "address" in json.loads(scheduler_file.read_text() or "{}"))
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [
                    bin_dir / "dask",
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "3",
                    "--no-dashboard",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        yield address
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        log.close()


def test_a_cancelled_flows_tasks_on_an_external_cluster_stop_after_its_process_is_gone(
    dask_cli_cluster: str, tmp_path: Path
) -> None:
    # The case: the flow's process ends while its tasks on the Dask
    # workers go on. A running one is interrupted there and gives its slot back;
    # the waiting ones are refused and never run. Nothing signals the Dask worker.
    client = get_client()
    client.create_limit("api", 1)
    client.create_limit("tag:db", 1)
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "etl.py"
    script.write_text(CANCELLED_FLOW)
    with concurrency("tag:db"):  # held (and renewed) here: the tagged tasks wait
        proc = subprocess.Popen(
            [sys.executable, str(script), dask_cli_cluster, str(marks)],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "flow.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        try:
            wait_until(
                lambda: (
                    (marks / "holding").exists()
                    and len(client.inspect_limit("tag:db").waiters) == 2
                ),
                "a task holds its slot and two wait",
                alive=proc,
                log=tmp_path / "flow.log",
            )
            flow_run = (marks / "flow").read_text()
            client.cancel_flow_run(flow_run, "not needed any more")
            proc.kill()  # the flow's process is gone (a worker's SIGKILL after its grace)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_until(lambda: (marks / "left").exists(), "the running task was interrupted")
        wait_until(lambda: client.read_limit("api").active_slots == 0, "its slot came back")
        assert client.inspect_limit("tag:db").waiters == ()
    assert sorted(p.name for p in marks.iterdir()) == ["flow", "holding", "left"]

    def recorded() -> bool:
        task_runs = client.read_flow_run(flow_run, with_task_runs=True).task_runs or ()
        return sum(t.state.type is S.CANCELLED for t in task_runs) == 3

    wait_until(recorded, "the worker recorded the three task runs CANCELLED")
    for task_run in client.read_flow_run(flow_run, with_task_runs=True).task_runs or ():
        history = [s.type for s in client.read_states(task_run.id)]
        assert history[-1] is S.CANCELLED and history.count(S.CANCELLED) == 1, history
        if task_run.name.startswith("needs_db"):
            assert S.RUNNING not in history, history
