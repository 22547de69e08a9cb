"""Final means final: no run leaves COMPLETED, FAILED, CRASHED or CANCELLED.

When a flow run is cancelled (or ends), the slot waits of its task runs are
withdrawn at once and never granted later: a task that had not started never
starts. On every backend.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headway import flow, task
from headway.client.base import Client
from headway.concurrency.sync import concurrency
from headway.concurrency.tags import hold_tag_slots
from headway.core.limits import SlotGrant
from headway.core.models import TaskRunRecord
from headway.core.states import (
    TERMINAL,
    Cancelled,
    Pending,
    Running,
    State,
    StateType,
)
from headway.exceptions import IllegalTransition, RunEnded
from headway.task_runners import ProcessPoolTaskRunner
from helpers.waiting import wait_until

FINAL = sorted(TERMINAL)


@task(tags=["db"])
def marks_when_run(path: str) -> None:
    """A tagged task that leaves a file when its body runs (importable by worker processes)."""
    Path(path).write_text("ran")


def new_id() -> str:
    return str(uuid.uuid4())


def _at(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _flow_run(client: Client) -> str:
    run_id = new_id()
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
    return run_id


def _task_record(task_run_id: str, flow_run_id: str, *states: State) -> TaskRunRecord:
    return TaskRunRecord(task_run_id, flow_run_id, "t-0", "t", ("db",), time.time(), states)


@pytest.mark.parametrize("final", FINAL)
def test_a_flow_run_never_leaves_a_final_state(client: Client, final: StateType) -> None:
    run_id = _flow_run(client)
    client.set_flow_run_state(run_id, State(final))
    for then in (Running(), Pending(), State(StateType.SCHEDULED, "AwaitingRetry")):
        with pytest.raises(IllegalTransition):
            client.set_flow_run_state(run_id, then)
    with pytest.raises(IllegalTransition):
        client.set_flow_run_state(run_id, State(StateType.COMPLETED))
    assert client.read_flow_run(run_id).state.type is final
    assert [s.type for s in client.read_states(run_id)] == [StateType.RUNNING, final]


@pytest.mark.parametrize("final", FINAL)
def test_a_task_run_never_leaves_a_final_state(client: Client, final: StateType) -> None:
    flow_run_id = _flow_run(client)
    task_run_id = new_id()
    client.record_task_runs(
        [
            _task_record(
                task_run_id, flow_run_id, Pending(timestamp=_at(0)), State(final, timestamp=_at(1))
            )
        ]
    )
    # Later reports (a worker that never heard of the cancel) are refused...
    client.record_task_runs(
        [
            _task_record(
                task_run_id,
                flow_run_id,
                Running(timestamp=_at(2)),
                State(StateType.COMPLETED, timestamp=_at(3)),
            )
        ]
    )
    # ...and so is a final state followed by more in one report.
    other = new_id()
    client.record_task_runs(
        [
            _task_record(
                other,
                flow_run_id,
                Pending(timestamp=_at(0)),
                Cancelled(timestamp=_at(1)),
                Running(timestamp=_at(2)),
                State(StateType.COMPLETED, timestamp=_at(3)),
            )
        ]
    )
    stored = client.read_task_run(task_run_id)
    assert stored.state.type is final
    assert [s.type for s in client.read_states(task_run_id)] == [StateType.PENDING, final]
    assert client.read_task_run(other).state.type is StateType.CANCELLED
    assert [s.type for s in client.read_states(other)] == [
        StateType.PENDING,
        StateType.CANCELLED,
    ]


def _cancel(client: Client, run_id: str) -> None:
    client.cancel_flow_run(run_id, "stop it")


def _end_cancelled(client: Client, run_id: str) -> None:
    client.set_flow_run_state(run_id, Cancelled(message="the flow's process was cancelled"))


@pytest.mark.parametrize("how", [_cancel, _end_cancelled], ids=["cancel", "set-cancelled"])
def test_the_withdrawn_waits_of_a_cancelled_run_hold_no_slot(
    client: Client, how: Callable[[Client, str], None]
) -> None:
    client.create_limit("tag:db", 1)
    outsider = client.acquire_slots(["tag:db"], 1)
    assert isinstance(outsider, SlotGrant) and outsider.lease_id is not None
    flow_run_id = _flow_run(client)
    task_run_id = new_id()
    client.record_task_runs([_task_record(task_run_id, flow_run_id, Pending())])
    outcome: list[BaseException | str] = []

    def waiting_task() -> None:
        # As a task on another machine waits: no cancel event of its flow here.
        try:
            with hold_tag_slots(client, ["db"], task_run_id=task_run_id, flow_run_id=None):
                outcome.append("granted")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiting_task, daemon=True)
    thread.start()
    wait_until(lambda: bool(client.inspect_limit("tag:db").waiters), "the task waits")
    how(client, flow_run_id)
    # Withdrawn at once: the waiting call is woken and refused, the queue is empty.
    thread.join(15)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RunEnded), outcome
    assert client.inspect_limit("tag:db").waiters == ()
    # The slot the outsider gives back goes to nobody of the cancelled run.
    assert client.release_slots(outsider.lease_id)
    assert client.read_limit("tag:db").active_slots == 0
    with pytest.raises(RunEnded):
        client.acquire_slots(
            ["tag:db"], 1, holder_kind="task_run", holder_id=task_run_id, timeout=0
        )
    assert client.read_limit("tag:db").active_slots == 0
    other = client.acquire_slots(["tag:db"], 1, timeout=0)
    assert isinstance(other, SlotGrant)
    # The feed says what happened to the task run's request.
    kinds = [e.kind for e in client.read_events(run_id=task_run_id).events]
    assert [k for k in kinds if k.startswith("slot.")][:2] == ["slot.denied", "slot.withdrawn"]
    assert "slot.refused" in kinds and "slot.granted" not in kinds


def test_a_task_waiting_on_a_tag_slot_of_a_cancelled_flow_never_runs(client: Client) -> None:
    client.create_limit("tag:db", 1)
    outsider = client.acquire_slots(["tag:db"], 1)
    assert isinstance(outsider, SlotGrant) and outsider.lease_id is not None
    body_ran = threading.Event()
    ids: dict[str, str] = {}

    @task(tags=["db"])
    def use_db() -> int:
        body_ran.set()
        return 1

    @flow
    def cancelled_while_waiting() -> State:
        from headway.context import get_flow_run_context

        ctx = get_flow_run_context()
        assert ctx is not None
        ids["flow"] = ctx.flow_run_id
        future = use_db.submit()
        ids["task"] = future.task_run_id
        future.wait()
        return future.state

    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(cancelled_while_waiting(return_state=True)), daemon=True
    )
    thread.start()
    wait_until(lambda: bool(client.inspect_limit("tag:db").waiters), "the task waits")
    client.cancel_flow_run(ids["flow"], "stop it")
    thread.join(30)
    assert not thread.is_alive()
    assert client.release_slots(outsider.lease_id)
    assert not body_ran.is_set()
    task_run = client.read_task_run(ids["task"])
    assert task_run.state.type is StateType.CANCELLED
    assert StateType.RUNNING not in [s.type for s in client.read_states(ids["task"])]
    assert client.inspect_limit("tag:db").waiters == ()
    assert client.read_limit("tag:db").active_slots == 0


def test_a_waiting_task_in_a_worker_process_of_a_cancelled_flow_never_runs(
    client: Client, tmp_path: Path
) -> None:
    client.create_limit("tag:db", 1)
    marker = tmp_path / "ran"
    ids: dict[str, str] = {}
    with concurrency("tag:db"):  # held, and renewed, by someone else

        @flow(task_runner=ProcessPoolTaskRunner(1))
        def cancelled_while_waiting() -> State:
            from headway.context import get_flow_run_context

            ctx = get_flow_run_context()
            assert ctx is not None
            ids["flow"] = ctx.flow_run_id
            future = marks_when_run.submit(str(marker))
            ids["task"] = future.task_run_id
            future.wait()
            return future.state

        result: list[object] = []
        thread = threading.Thread(
            target=lambda: result.append(cancelled_while_waiting(return_state=True)), daemon=True
        )
        thread.start()
        wait_until(lambda: bool(client.inspect_limit("tag:db").waiters), "the task waits")
        client.cancel_flow_run(ids["flow"], "stop it")
        thread.join(60)
        assert not thread.is_alive()
    assert not marker.exists()
    assert client.read_task_run(ids["task"]).state.type is StateType.CANCELLED
    assert StateType.RUNNING not in [s.type for s in client.read_states(ids["task"])]
    assert client.inspect_limit("tag:db").waiters == ()
    assert client.read_limit("tag:db").active_slots == 0


@task
def holds_api_until_interrupted(marker_dir: str) -> str:
    """Holds a slot of "api" and runs until it is interrupted (importable by worker processes)."""
    with concurrency("api"):
        Path(marker_dir, "holding").write_text("")
        try:
            while True:  # pure Python: interrupted at its next bytecode
                time.sleep(0.02)
        finally:
            Path(marker_dir, "left").write_text("")


@task
async def holds_api_until_cancelled(marker_dir: str) -> str:
    """The async kind: its awaited code is cancelled."""
    import asyncio

    from headway.concurrency.asyncio import concurrency as async_concurrency

    async with async_concurrency("api"):
        Path(marker_dir, "holding").write_text("")
        try:
            while True:
                await asyncio.sleep(0.02)
        finally:
            Path(marker_dir, "left").write_text("")


@pytest.mark.parametrize("runner", ["threads", "processes", "async"])
def test_a_running_task_of_a_cancelled_flow_is_interrupted_and_gives_its_slots_back(
    client: Client, tmp_path: Path, runner: str
) -> None:
    client.create_limit("api", 1)
    ids: dict[str, str] = {}

    @flow(task_runner=ProcessPoolTaskRunner(1) if runner == "processes" else None)
    def cancelled_while_running() -> State:
        from headway.context import get_flow_run_context

        ctx = get_flow_run_context()
        assert ctx is not None
        ids["flow"] = ctx.flow_run_id
        kind = holds_api_until_cancelled if runner == "async" else holds_api_until_interrupted
        future = kind.submit(str(tmp_path))
        ids["task"] = future.task_run_id
        future.wait()
        return future.state

    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(cancelled_while_running(return_state=True)), daemon=True
    )
    thread.start()
    wait_until(lambda: (tmp_path / "holding").exists(), "the task holds its slot", timeout=60)
    assert client.read_limit("api").active_slots == 1
    # No worker runs this flow run: nothing but the store tells its process.
    client.cancel_flow_run(ids["flow"], "stop it")
    thread.join(60)
    assert not thread.is_alive()
    assert (tmp_path / "left").exists()
    assert client.read_limit("api").active_slots == 0
    task_run = client.read_task_run(ids["task"])
    assert task_run.state.type is StateType.CANCELLED, task_run.state
    assert client.read_flow_run(ids["flow"]).state.type is StateType.CANCELLED
