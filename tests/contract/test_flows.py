"""Flows through the public API: what a call returns, and what the store records.

Tests that take ``client`` run on every backend (embedded and server, SQLite and
PostgreSQL); the others exercise SDK behaviour on the default embedded store.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from typing import Any

import pytest

from headway import flow, get_run_logger, task
from headway.client.base import Client, get_client
from headway.context import get_flow_run_context
from headway.core.states import State, StateType
from headway.exceptions import MissingContextError, TaskRunTimeout, ValidationError

S = StateType


def _current_flow_run_id() -> str:
    ctx = get_flow_run_context()
    assert ctx is not None
    return ctx.flow_run_id


def _state_types(client: Client, run_id: str) -> list[tuple[StateType, str]]:
    return [(s.type, s.name) for s in client.read_states(run_id)]


def test_a_flow_run_is_recorded_with_states_parameters_pid_and_host(client: Client) -> None:
    @flow
    def add_numbers(a: int, b: int = 10) -> dict[str, Any]:
        return {"sum": a + b, "id": _current_flow_run_id()}

    result = add_numbers(1)
    assert result["sum"] == 11
    run = client.read_flow_run(result["id"])
    assert run.flow_name == "add-numbers"
    assert run.state.type is S.COMPLETED
    assert run.parameters == {"a": 1, "b": 10}
    assert run.start_time is not None and run.end_time is not None
    assert run.start_time.tzinfo is not None and run.end_time >= run.start_time
    assert run.run_count == 1
    adjective, _, noun = run.name.partition("-")
    assert adjective and noun, run.name
    assert _state_types(client, run.id) == [
        (S.PENDING, "Pending"),
        (S.RUNNING, "Running"),
        (S.COMPLETED, "Completed"),
    ]
    if hasattr(client, "store"):  # pid and host are columns the embedded store exposes
        with client.store.db.read() as tx:  # type: ignore[attr-defined]
            row = tx.one("SELECT pid, host FROM flow_runs WHERE id = :id", {"id": run.id})
        assert row == (os.getpid(), socket.gethostname())


def test_a_failing_flow_is_failed_with_its_message_and_raises_the_original(
    client: Client,
) -> None:
    seen: dict[str, str] = {}
    original = KeyError("missing-key")

    @flow
    def broken() -> None:
        seen["id"] = _current_flow_run_id()
        raise original

    with pytest.raises(KeyError) as info:
        broken()
    assert info.value is original
    run = client.read_flow_run(seen["id"])
    assert run.state.type is S.FAILED
    assert run.state.message == "KeyError: 'missing-key'"
    assert run.end_time is not None


def test_return_state_gives_the_final_state_and_its_result() -> None:
    @flow
    def ok() -> int:
        return 7

    @flow
    def bad() -> int:
        raise ValueError("no")

    state = ok(return_state=True)
    assert isinstance(state, State) and state.is_completed()
    assert state.result() == 7  # type: ignore[attr-defined]
    failed = bad(return_state=True)
    assert failed.is_failed() and failed.message == "ValueError: no"
    with pytest.raises(ValueError, match="no"):
        failed.result()  # type: ignore[attr-defined]
    assert isinstance(failed.result(raise_on_failure=False), ValueError)  # type: ignore[attr-defined]


def test_flow_retries_record_awaiting_retry_then_retrying(client: Client) -> None:
    attempts: list[str] = []

    @flow(retries=2, retry_delay_seconds=0)
    def flaky() -> str:
        attempts.append(_current_flow_run_id())
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)}")
        return "done"

    assert flaky() == "done"
    assert len(set(attempts)) == 1  # one flow run, three attempts
    run = client.read_flow_run(attempts[0])
    assert run.state.type is S.COMPLETED
    assert run.run_count == 3
    assert _state_types(client, run.id) == [
        (S.PENDING, "Pending"),
        (S.RUNNING, "Running"),
        (S.SCHEDULED, "AwaitingRetry"),
        (S.RUNNING, "Retrying"),
        (S.SCHEDULED, "AwaitingRetry"),
        (S.RUNNING, "Retrying"),
        (S.COMPLETED, "Completed"),
    ]
    messages = [s.message for s in client.read_states(run.id) if s.name == "AwaitingRetry"]
    assert messages == ["RuntimeError: attempt 1", "RuntimeError: attempt 2"]


def test_flow_fails_after_its_last_retry() -> None:
    calls: list[str] = []

    @flow(retries=1)
    def always_bad() -> None:
        calls.append(_current_flow_run_id())
        raise ValueError(f"bad {len(calls)}")

    state = always_bad(return_state=True)
    assert len(calls) == 2
    assert state.is_failed() and state.message == "ValueError: bad 2"
    assert get_client().read_flow_run(calls[0]).run_count == 2


def test_arguments_that_do_not_bind_raise_type_error_and_record_nothing(client: Client) -> None:
    @flow
    def needs_two(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        needs_two(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        needs_two(1, 2, c=3)  # type: ignore[call-arg]
    assert client.list_flow_runs(flow_name="needs-two") == []


def test_parameters_json_cannot_hold_are_recorded_as_repr(client: Client) -> None:
    class Point:
        def __repr__(self) -> str:
            return "Point(1, 2)"

    @flow
    def takes(p: object, nums: tuple[int, ...], table: dict[Any, Any]) -> str:
        return _current_flow_run_id()

    run_id = takes(Point(), (1, 2), {1: "one", (2, 3): {4}})
    assert client.read_flow_run(run_id).parameters == {
        "p": "Point(1, 2)",
        "nums": [1, 2],
        "table": {"1": "one", "(2, 3)": "{4}"},
    }


def test_a_subflow_is_a_child_run_whose_parent_is_a_task_run_of_the_parent(
    client: Client,
) -> None:
    @flow
    def child(n: int) -> str:
        return _current_flow_run_id()

    @flow
    def parent() -> tuple[str, str]:
        return _current_flow_run_id(), child(3)

    parent_id, child_id = parent()
    child_run = client.read_flow_run(child_id)
    assert child_run.parameters == {"n": 3}
    assert child_run.state.type is S.COMPLETED
    assert child_run.parent_task_run_id is not None
    link = client.read_task_run(child_run.parent_task_run_id)
    assert link.flow_run_id == parent_id
    assert link.name == "child-0"
    assert link.state.type is S.COMPLETED
    assert [s.type for s in client.read_states(link.id)] == [S.PENDING, S.RUNNING, S.COMPLETED]
    assert [t.id for t in client.read_task_runs(parent_id)] == [link.id]


def test_a_failing_subflow_fails_its_link_and_its_parent() -> None:
    ids: dict[str, str] = {}

    @flow
    def child() -> None:
        ids["child"] = _current_flow_run_id()
        raise RuntimeError("child broke")

    @flow
    def parent() -> None:
        ids["parent"] = _current_flow_run_id()
        child()

    with pytest.raises(RuntimeError, match="child broke"):
        parent()
    client = get_client()
    child_run = client.read_flow_run(ids["child"])
    assert child_run.state.type is S.FAILED
    assert child_run.parent_task_run_id is not None
    assert client.read_task_run(child_run.parent_task_run_id).state.type is S.FAILED
    assert client.read_flow_run(ids["parent"]).state.type is S.FAILED


def test_an_async_flow_returns_a_coroutine_and_records_its_run(client: Client) -> None:
    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    @flow
    async def pipeline(x: int) -> tuple[int, str]:
        return await double(x), _current_flow_run_id()

    coro = pipeline(4)
    assert asyncio.iscoroutine(coro)
    value, run_id = asyncio.run(coro)
    assert value == 8
    run = client.read_flow_run(run_id, with_task_runs=True)
    assert run.state.type is S.COMPLETED
    assert [(t.name, t.state.type) for t in run.task_runs or ()] == [("double-0", S.COMPLETED)]


def test_an_async_flow_that_fails_raises_and_is_failed() -> None:
    seen: dict[str, str] = {}

    @flow
    async def bad() -> None:
        seen["id"] = _current_flow_run_id()
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        asyncio.run(bad())
    assert get_client().read_flow_run(seen["id"]).state.type is S.FAILED


def test_a_flow_past_its_timeout_fails_with_task_run_timeout() -> None:
    release = threading.Event()
    seen: dict[str, str] = {}

    @flow(timeout_seconds=0.2)
    def stuck() -> None:
        seen["id"] = _current_flow_run_id()
        # Blocked in C, far past the timeout; not longer: under a tracer (coverage)
        # CPython 3.11 leaves the other threads spinning, unable to call a function,
        # until the timeout's exception reaches this thread (fixed in 3.12).
        release.wait(2)

    try:
        with pytest.raises(TaskRunTimeout, match=r"timed out after 0\.2 s"):
            stuck()
    finally:
        release.set()
    run = get_client().read_flow_run(seen["id"])
    assert run.state.type is S.FAILED
    assert "TaskRunTimeout" in (run.state.message or "")


def test_run_logs_and_prints_are_recorded_with_their_runs(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    @task
    def work() -> str:
        get_run_logger().warning("inside the task")
        print("task print")
        from headway.context import get_task_run_context

        ctx = get_task_run_context()
        assert ctx is not None
        return ctx.task_run_id

    @flow(log_prints=True)
    def logged() -> tuple[str, str]:
        get_run_logger().info("hello %s", "logs")
        print("flow print", 42)
        return _current_flow_run_id(), work()

    flow_run_id, task_run_id = logged()
    captured = capsys.readouterr()
    assert "flow print 42" in captured.out and "task print" in captured.out  # still printed
    assert "hello logs" in captured.err  # run logs go to stderr too
    lines = [line for _, line in client.read_logs(flow_run_id)]
    by_message = {line.message: line for line in lines}
    assert by_message["hello logs"].task_run_id is None
    assert by_message["hello logs"].level_name == "INFO"
    assert by_message["flow print 42"].task_run_id is None
    assert by_message["inside the task"].task_run_id == task_run_id
    assert by_message["inside the task"].level_name == "WARNING"
    assert by_message["task print"].task_run_id == task_run_id
    assert all(line.flow_run_id == flow_run_id for line in lines)
    assert any(m.startswith("Beginning flow run") for m in by_message)


def test_prints_are_not_recorded_without_log_prints() -> None:
    @flow
    def quiet() -> str:
        print("not recorded")
        return _current_flow_run_id()

    run_id = quiet()
    assert "not recorded" not in [line.message for _, line in get_client().read_logs(run_id)]


def test_get_run_logger_outside_a_run_raises_a_clear_error() -> None:
    with pytest.raises(MissingContextError, match=r"@flow or @task"):
        get_run_logger()


def test_keyboard_interrupt_cancels_the_flow_and_its_unfinished_task_runs(
    client: Client,
) -> None:
    started = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    @task
    def blocked() -> None:
        started.set()
        # Short waits: the cancel's interrupt lands between two of them (one
        # long wait in C code would hold the task, and the test, for its length).
        deadline = time.monotonic() + 10
        while not release.wait(0.02) and time.monotonic() < deadline:
            pass

    @task
    def quick() -> int:
        return 1

    @flow
    def interrupted() -> None:
        seen["id"] = _current_flow_run_id()
        assert quick() == 1
        seen["future"] = blocked.submit()
        assert started.wait(10)
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            interrupted()
    finally:
        release.set()
    run = client.read_flow_run(seen["id"], with_task_runs=True)
    assert run.state.type is S.CANCELLED
    assert "interrupted (KeyboardInterrupt)" in (run.state.message or "")
    states = {t.name: t.state.type for t in run.task_runs or ()}
    assert states == {"quick-0": S.COMPLETED, "blocked-0": S.CANCELLED}
    assert seen["future"].state.type is S.CANCELLED


def test_a_flow_waits_for_tasks_it_did_not_wait_for(client: Client) -> None:
    release = threading.Event()

    @task
    def slowish(i: int) -> int:
        release.wait(10)
        return i

    @flow
    def fire_and_forget() -> str:
        for i in range(5):
            slowish.submit(i)
        release.set()
        return _current_flow_run_id()

    run = client.read_flow_run(fire_and_forget(), with_task_runs=True)
    assert run.state.type is S.COMPLETED
    assert sorted(t.state.type for t in run.task_runs or ()) == [S.COMPLETED] * 5


def test_decorator_forms_and_options() -> None:
    def plain() -> int:
        return 1

    bare = flow(plain)
    named = flow(name="custom-name", retries=1)(plain)
    assert bare.name == "plain" and named.name == "custom-name" and named.retries == 1
    assert bare() == 1 and named() == 1
    assert bare.__doc__ == plain.__doc__ and bare.__wrapped__ is plain  # type: ignore[attr-defined]
    other = named.with_options(name="renamed")
    assert other.name == "renamed" and other.retries == 1
    with pytest.raises(TypeError, match="unknown flow option"):
        named.with_options(colour="red")
    with pytest.raises(ValidationError, match="retries"):
        flow(retries=-1)(plain)
    with pytest.raises(ValidationError, match="retry_delay_seconds"):
        flow(retry_delay_seconds=[1, -2])(plain)
    with pytest.raises(ValidationError, match="timeout_seconds"):
        flow(timeout_seconds=0)(plain)
    from headway.task_runners import ThreadPoolTaskRunner

    with pytest.raises(ValidationError, match="task runner instance"):
        flow(task_runner=ThreadPoolTaskRunner)(plain)  # type: ignore[arg-type]


def test_an_interrupt_while_the_run_starts_still_ends_it(client: Client) -> None:
    from headway.task_runners import ThreadPoolTaskRunner

    class InterruptedStart(ThreadPoolTaskRunner):
        def duplicate(self) -> InterruptedStart:
            return InterruptedStart()

        def start(self) -> None:
            raise KeyboardInterrupt

    @flow(task_runner=InterruptedStart())
    def never_runs() -> None:
        raise AssertionError("the body must not run")

    with pytest.raises(KeyboardInterrupt):
        never_runs()
    (run,) = client.list_flow_runs(flow_name="never-runs")
    assert run.state.type is S.CANCELLED
    assert [s.type for s in client.read_states(run.id)] == [S.PENDING, S.CANCELLED]


def test_a_run_ends_once_when_an_interrupt_races_its_own_end(client: Client) -> None:
    from headway._engine.flow_engine import FlowRunEngine

    @flow(retries=3)
    def raced() -> None:
        return None

    # The interrupt wins: the body's failure arriving afterwards changes nothing
    # (no retry, no second final state, no IllegalTransition).
    engine = FlowRunEngine(raced, (), {})
    engine.start(handle_sigterm=False)
    engine.begin_attempt()
    engine.interrupted(KeyboardInterrupt())
    assert engine.failed(RuntimeError("woken by the cancellation")) is None
    engine.close()
    assert [s.type for s in client.read_states(engine.id)] == [S.PENDING, S.RUNNING, S.CANCELLED]
    assert engine.outcome(return_state=True).type is S.CANCELLED

    # The run's own end wins: a late interrupt (process exit) changes nothing.
    engine = FlowRunEngine(raced, (), {})
    engine.start(handle_sigterm=False)
    engine.begin_attempt()
    engine.succeeded(42)
    engine.crash_at_exit()
    engine.close()
    assert [s.type for s in client.read_states(engine.id)] == [S.PENDING, S.RUNNING, S.COMPLETED]
    assert engine.outcome(return_state=False) == 42
