"""Task runners: the worker cap, the default worker count, and tasks in worker processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from headway import flow, task
from headway.client.base import get_client
from headway.context import get_flow_run_context
from headway.core.states import StateType
from headway.settings import get_settings
from headway.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

S = StateType


class Observer:
    """Counts tasks running at once; each run waits (bounded) for a fourth to join it."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.active = 0
        self.peak = 0
        self.cond = threading.Condition()

    def run(self) -> None:
        with self.cond:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.cond.notify_all()
            # With a working cap no more than `cap` ever meet here, so this wait
            # ends by its timeout; a broken cap lets cap + 1 meet and shows in peak.
            self.cond.wait_for(lambda: self.active > self.cap, timeout=0.3)
            self.active -= 1


def test_max_workers_caps_how_many_tasks_of_the_flow_run_at_once() -> None:
    observer = Observer(cap=3)

    @task
    def observed(i: int) -> None:
        observer.run()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def capped() -> None:
        observed.map(range(7)).wait()

    capped()
    assert observer.peak == 3  # three at once (so they do run in parallel), never four


def test_default_worker_count_is_pythons_and_the_setting_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ThreadPoolTaskRunner().max_workers == min(32, (os.cpu_count() or 1) + 4)
    monkeypatch.setenv("HEADWAY_TASK_RUNNER_MAX_WORKERS", "2")
    assert get_settings().task_runner_max_workers == 2
    assert ThreadPoolTaskRunner().max_workers == 2
    assert ThreadPoolTaskRunner(max_workers=5).max_workers == 5
    with pytest.raises(ValueError, match="positive integer"):
        ThreadPoolTaskRunner(max_workers=0)
    with pytest.raises(ValueError, match="positive integer"):
        ProcessPoolTaskRunner(max_workers=-1)


def test_the_default_runner_of_a_flow_uses_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWAY_TASK_RUNNER_MAX_WORKERS", "2")
    observer = Observer(cap=2)

    @task
    def observed(i: int) -> None:
        observer.run()

    @flow
    def default_runner() -> int:
        ctx = get_flow_run_context()
        assert ctx is not None and isinstance(ctx.task_runner, ThreadPoolTaskRunner)
        observed.map(range(4)).wait()
        return ctx.task_runner.max_workers

    assert default_runner() == 2
    assert observer.peak == 2


def test_each_flow_run_gets_its_own_runner_and_shuts_it_down() -> None:
    runner = ThreadPoolTaskRunner(max_workers=2)
    seen: list[Any] = []
    threads: list[threading.Thread] = []

    @task
    def noop() -> None:
        return None

    @flow(task_runner=runner)
    def uses_runner() -> None:
        ctx = get_flow_run_context()
        assert ctx is not None
        seen.append(ctx.task_runner)
        noop.submit().wait()
        threads.extend(ctx.task_runner._threads)  # type: ignore[attr-defined]

    uses_runner()
    uses_runner()
    assert seen[0] is not runner and seen[1] is not seen[0]
    with pytest.raises(RuntimeError, match="shut down"):
        from headway._engine.task_call import create_call

        seen[0].submit(create_call(noop, (), {}))
    assert threads and all(not t.is_alive() for t in threads)  # joined when each run ended


@pytest.mark.slow
def test_process_pool_runs_tasks_in_worker_processes_and_records_them_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from process_pool_tasks import fails_in_worker, fails_once, whoami

    monkeypatch.setenv("HEADWAY_TEST_ATTEMPT_FILE", str(tmp_path / "attempts"))

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def in_processes() -> tuple[list[tuple[int, int]], Any, str, str]:
        ctx = get_flow_run_context()
        assert ctx is not None
        results = whoami.map([1, 2, 3]).result()
        failed = fails_in_worker.submit()
        failed.wait()
        return results, failed.state, fails_once.submit().result(), ctx.flow_run_id

    results, failed_state, retried, run_id = in_processes()
    assert [square for _, square in results] == [1, 4, 9]
    assert os.getpid() not in {pid for pid, _ in results}
    assert failed_state.type is S.FAILED
    assert failed_state.message == "ArithmeticError: worker says no"
    with pytest.raises(ArithmeticError, match="worker says no"):
        failed_state.result()
    assert retried == "second attempt ok"
    client = get_client()
    runs = {t.name: t for t in client.read_task_runs(run_id)}
    assert set(runs) == {"whoami-0", "whoami-1", "whoami-2", "fails_in_worker-0", "fails_once-0"}
    for name in ("whoami-0", "whoami-1", "whoami-2"):
        assert [s.type for s in client.read_states(runs[name].id)] == [
            S.PENDING,
            S.RUNNING,
            S.COMPLETED,
        ]
    assert runs["fails_once-0"].run_count == 2
    assert [s.name for s in client.read_states(runs["fails_once-0"].id)] == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    logs = [line for _, line in client.read_logs(run_id)]
    worker_lines = [line for line in logs if line.message.startswith("squaring")]
    assert len(worker_lines) == 3
    assert {line.task_run_id for line in worker_lines} == {runs[f"whoami-{i}"].id for i in range(3)}


@pytest.mark.slow
def test_process_pool_tasks_take_futures_as_arguments() -> None:
    from process_pool_tasks import add_in_worker, fails_in_worker

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def chained() -> tuple[int, Any]:
        a = add_in_worker.submit(1, 2)
        b = add_in_worker.submit(a, 10)  # waits for a, in the parent, then runs in a worker
        c = add_in_worker.submit(b, y=100)
        skipped = add_in_worker.submit(fails_in_worker.submit(), 1)
        skipped.wait()
        return c.result(), skipped.state

    value, skipped = chained()
    assert value == 113
    assert skipped.type is S.CANCELLED and skipped.name == "UpstreamFailed"
