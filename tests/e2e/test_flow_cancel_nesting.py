"""Cancelling a flow run whose own code runs here, with runs nested in it.

The flows run in a thread of the test process on the embedded store, and the
cancel comes through the store as from another process (no worker, no signal):
the watch finds the run cancelled and interrupts its code. A task or subflow
the flow's code calls directly runs in the same thread (or asyncio task) as
that code: the interrupt unwinds it too and reaches the flow, and a catch-all
``except Exception`` in the flow's code does not stop it. Cancelling a
subflow alone ends that subflow, and its parent goes on. (The same through a
real script and the CLI, embedded and through a server: test_script_cancel.py.)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headway import flow, task
from headway.client.base import get_client
from headway.concurrency.asyncio import concurrency as async_concurrency
from headway.concurrency.sync import concurrency
from headway.context import get_flow_run_context
from headway.core.states import State, StateType
from headway.exceptions import RunCancelled
from helpers.waiting import wait_until

RUNS: dict[str, str] = {}


def mark(marks: Path, name: str) -> None:
    (marks / name).write_text("")


def note_run(key: str) -> None:
    ctx = get_flow_run_context()
    assert ctx is not None
    RUNS[key] = ctx.flow_run_id


def hold_and_spin(marks: Path) -> None:
    with concurrency("db"):
        mark(marks, "holding")
        while True:
            threading.Event().wait(0.01)


@task
def spins(marks: Path) -> None:
    hold_and_spin(marks)
    mark(marks, "task-after")


@flow
def calls_a_task(marks: Path) -> None:
    note_run("flow")
    try:
        spins(marks)
    except Exception:  # a catch-all in the flow's code: the cancel is not an Exception
        mark(marks, "swallowed")
    mark(marks, "after")


@flow
def child(marks: Path) -> None:
    note_run("child")
    hold_and_spin(marks)
    mark(marks, "child-after")


@flow
def parent(marks: Path) -> str:
    note_run("parent")
    try:
        child(marks)
    except RunCancelled:
        mark(marks, "child-cancelled")
    return "went on"


@flow(timeout_seconds=600)
def timed(marks: Path) -> None:
    note_run("flow")
    hold_and_spin(marks)
    mark(marks, "after")


@task
async def spins_async(marks: Path) -> None:
    async with async_concurrency("db"):
        mark(marks, "holding")
        while True:
            await asyncio.sleep(0.01)


@flow
async def awaits_a_task(marks: Path) -> None:
    note_run("flow")
    try:
        await spins_async(marks)
    except Exception:
        mark(marks, "swallowed")
    mark(marks, "after")


def _marks(tmp_path: Path) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    return marks


def _run(call: Callable[[], Any], marks: Path) -> list[Any]:
    """Start ``call`` in a thread; its outcome (state or error) lands in the list."""
    RUNS.clear()
    get_client().create_limit("db", 1)
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    threading.Thread(target=target, daemon=True).start()
    wait_until(lambda: (marks / "holding").exists() or outcome, "the slot held")
    assert not outcome, outcome
    return outcome


def _ended(outcome: list[Any]) -> Any:
    wait_until(lambda: outcome, "the flow call returned")
    assert get_client().read_limit("db").active_slots == 0
    return outcome[0]


def _state(run_id: str) -> State:
    return get_client().read_flow_run(run_id).state


def test_a_task_called_by_the_cancelled_flows_code_unwinds_with_it(tmp_path: Path) -> None:
    marks = _marks(tmp_path)
    outcome = _run(lambda: calls_a_task(marks, return_state=True), marks)
    get_client().cancel_flow_run(RUNS["flow"], "stop it")
    final = _ended(outcome)
    assert isinstance(final, State) and final.type is StateType.CANCELLED, final
    assert final.message == "stop it"
    (task_run,) = get_client().read_flow_run(RUNS["flow"], with_task_runs=True).task_runs or ()
    assert task_run.state.type is StateType.CANCELLED, task_run.state
    assert {p.name for p in marks.iterdir()} == {"holding"}


def test_cancelling_a_subflow_alone_leaves_its_parent_running(tmp_path: Path) -> None:
    marks = _marks(tmp_path)
    outcome = _run(lambda: parent(marks, return_state=True), marks)
    get_client().cancel_flow_run(RUNS["child"], "only the child")
    final = _ended(outcome)
    assert final.type is StateType.COMPLETED and final.result() == "went on", final
    assert _state(RUNS["child"]).type is StateType.CANCELLED
    assert {p.name for p in marks.iterdir()} == {"holding", "child-cancelled"}


def test_a_flow_with_a_timeout_is_cancelled_not_timed_out(tmp_path: Path) -> None:
    marks = _marks(tmp_path)
    outcome = _run(lambda: timed(marks), marks)
    get_client().cancel_flow_run(RUNS["flow"], "stop it")
    error = _ended(outcome)
    assert isinstance(error, RunCancelled), error
    assert _state(RUNS["flow"]).type is StateType.CANCELLED
    assert {p.name for p in marks.iterdir()} == {"holding"}


def test_an_async_task_awaited_by_the_cancelled_flows_code_unwinds_with_it(
    tmp_path: Path,
) -> None:
    marks = _marks(tmp_path)
    outcome = _run(lambda: asyncio.run(awaits_a_task(marks)), marks)
    get_client().cancel_flow_run(RUNS["flow"], "stop it")
    error = _ended(outcome)
    assert isinstance(error, RunCancelled) and str(error) == "stop it", error
    assert _state(RUNS["flow"]).type is StateType.CANCELLED
    (task_run,) = get_client().read_flow_run(RUNS["flow"], with_task_runs=True).task_runs or ()
    assert task_run.state.type is StateType.CANCELLED, task_run.state
    assert {p.name for p in marks.iterdir()} == {"holding"}
