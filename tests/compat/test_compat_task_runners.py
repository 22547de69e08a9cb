"""Prefect's task runner interface on headway's runners.

``submit(task, parameters, wait_for)``, ``map(task, parameters)``,
``duplicate()`` and equality, as tests/test_task_runners.py asserts them, and a
custom runner written against that interface used as a flow's task runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from headway import flow, tags, task, unmapped
from headway.client.base import get_client
from headway.context import current_tags, get_flow_run_context
from headway.futures import TaskFuture
from headway.task_runners import TaskRunner, ThreadPoolTaskRunner


@task
def pair(param1: Any, param2: Any) -> tuple[Any, Any]:
    return param1, param2


@task
async def pair_async(param1: Any, param2: Any) -> tuple[Any, Any]:
    await asyncio.sleep(0)
    return param1, param2


@task
def tags_in_force(param1: Any = None, param2: Any = None) -> set[str]:
    return set(current_tags())


def test_duplicate_and_equality() -> None:
    """Prefect: ``TestThreadPoolTaskRunner.test_duplicate`` in tests/test_task_runners.py
    (and ``test_equality`` of TestProcessPoolTaskRunner)."""
    runner = ThreadPoolTaskRunner(max_workers=100)
    duplicate = runner.duplicate()
    assert isinstance(duplicate, ThreadPoolTaskRunner)
    assert duplicate is not runner
    assert duplicate == runner
    assert ThreadPoolTaskRunner(max_workers=3) != runner
    assert len({runner, duplicate}) == 1


def test_runner_must_be_started() -> None:
    """Prefect: ``TestThreadPoolTaskRunner.test_runner_must_be_started``."""
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        ThreadPoolTaskRunner().submit(pair, {})


def test_set_max_workers() -> None:
    """Prefect: ``TestThreadPoolTaskRunner.test_set_max_workers``."""
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        assert isinstance(runner, ThreadPoolTaskRunner)
        assert runner.max_workers == 2


@pytest.mark.parametrize("fn", [pair, pair_async], ids=["sync", "async"])
def test_submit_task(fn: Any) -> None:
    """Prefect: ``test_submit_sync_task`` and ``test_submit_async_task``."""
    with ThreadPoolTaskRunner() as runner:
        future = runner.submit(fn, {"param1": 1, "param2": 2})
        assert isinstance(future, TaskFuture)
        assert future.result() == (1, 2)
    assert get_client().read_task_run(future.task_run_id).state.type.value == "COMPLETED"


def test_submitted_task_receives_context() -> None:
    """Prefect: ``test_submit_sync_task_receives_context`` and
    ``test_map_sync_task_with_context``."""
    with tags("tag1", "tag2"):
        with ThreadPoolTaskRunner() as runner:
            assert runner.submit(tags_in_force, {}).result() == {"tag1", "tag2"}
            futures = runner.map(tags_in_force, {"param1": [1, 2, 3]})
            assert [f.result() for f in futures] == [{"tag1", "tag2"}] * 3


@pytest.mark.parametrize("fn", [pair, pair_async], ids=["sync", "async"])
def test_map_task(fn: Any) -> None:
    """Prefect: ``test_map_sync_task`` and ``test_map_async_task``."""
    with ThreadPoolTaskRunner() as runner:
        futures = runner.map(fn, {"param1": [1, 2, 3], "param2": [4, 5, 6]})
        assert all(isinstance(f, TaskFuture) for f in futures)
        assert [f.result() for f in futures] == [(1, 4), (2, 5), (3, 6)]


def test_map_with_future_resolved_to_list_and_unmapped() -> None:
    """Prefect: ``test_map_with_future_resolved_to_list``; ``unmapped`` passes a value whole."""

    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    with ThreadPoolTaskRunner() as runner:
        source = runner.submit(numbers, {})
        futures = runner.map(pair, {"param1": source, "param2": source})
        assert [f.result() for f in futures] == [(1, 1), (2, 2), (3, 3)]
        whole = runner.map(pair, {"param1": [1, 2], "param2": unmapped([9])})
        assert [f.result() for f in whole] == [(1, [9]), (2, [9])]


def test_handles_recursively_submitted_tasks() -> None:
    """Prefect: ``TestThreadPoolTaskRunner.test_handles_recursively_submitted_tasks``:
    33 nested submissions finish, with a pool of 32 threads or fewer."""

    @task
    def recursive(n: int) -> int:
        if n == 0:
            return n
        return recursive.submit(n - 1).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def my_flow() -> int:
        return recursive.submit(33).result()

    assert my_flow() == 0


class CountingRunner(ThreadPoolTaskRunner):
    """Written against Prefect's interface: ``submit(task, parameters, wait_for, dependencies)``."""

    submitted: list[str] = []

    def duplicate(self) -> CountingRunner:
        return CountingRunner(self.max_workers)

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[TaskFuture[Any]] | None = None,
        dependencies: Any = None,
    ) -> TaskFuture[Any]:
        CountingRunner.submitted.append(f"{task.name}{sorted(parameters.items())}")
        return super().submit(task, parameters, wait_for, dependencies)


class DelegatingRunner(TaskRunner):
    """A runner of its own (no headway base but the abstract one), Prefect's way."""

    def __init__(self) -> None:
        self.inner = ThreadPoolTaskRunner(2)

    def duplicate(self) -> DelegatingRunner:
        return DelegatingRunner()

    def start(self) -> None:
        self.inner.start()

    def shutdown(self, wait: bool = True) -> None:
        self.inner.shutdown(wait)

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[TaskFuture[Any]] | None = None,
        dependencies: Any = None,
    ) -> TaskFuture[Any]:
        return self.inner.submit(task, parameters, wait_for)


def test_a_custom_runner_written_against_prefects_interface() -> None:
    """Prefect: the ``TaskRunner`` interface of src/prefect/task_runners.py, as the runners
    in tests/test_task_runners.py use it: a flow's ``.submit()`` and ``.map()`` reach the
    custom ``submit`` with the task and its parameters by name, and the runs are recorded
    as usual (names, wait_for, results)."""
    CountingRunner.submitted.clear()

    @flow(task_runner=CountingRunner(4))
    def counted() -> tuple[Any, list[Any], str]:
        first = pair.submit(1, param2=2)
        mapped = pair.map([3, 4], unmapped(0), wait_for=[first])
        ctx = get_flow_run_context()
        assert ctx is not None
        return first.result(), mapped.result(), ctx.flow_run_id

    first, mapped, run_id = counted()
    assert (first, mapped) == ((1, 2), [(3, 0), (4, 0)])
    assert CountingRunner.submitted == [
        "pair[('param1', 1), ('param2', 2)]",
        "pair[('param1', 3), ('param2', 0)]",
        "pair[('param1', 4), ('param2', 0)]",
    ]
    names = sorted(t.name for t in get_client().read_task_runs(run_id))
    assert names == ["pair-0", "pair-1", "pair-2"]

    @flow(task_runner=DelegatingRunner())
    def delegated() -> list[Any]:
        return pair.map([1, 2], [3, 4]).result()

    assert delegated() == [(1, 3), (2, 4)]
