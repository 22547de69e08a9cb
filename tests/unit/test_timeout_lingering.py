"""Timed-out bodies and the slots around them: never freed while still in use.

The run's tag slots are held once for all its attempts. An attempt that timed
out while blocked in C code still does the work those slots guard, so the next
attempt waits for it to end: otherwise two bodies would run under one slot.
And a timed-out body's leftovers are only its own thread's: tasks it submitted
keep theirs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

import headway._engine.timeouts as timeouts
from headway import flow, task
from headway._engine.interrupts import _to_the_end
from headway.client.base import get_client
from headway.concurrency._scopes import BodyScope
from headway.concurrency.sync import concurrency as sync_concurrency
from headway.core.states import State
from headway.exceptions import ConcurrencySlotAcquisitionError, TaskRunTimeout

WITHIN = 10.0


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_retry_waits_for_the_timed_out_body_it_would_run_beside(
    gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_client().create_limit("tag:db", 1)
    timed_out = threading.Event()
    noted = timeouts.note_lingering_body

    def note(done: threading.Event) -> None:
        noted(done)
        timed_out.set()

    monkeypatch.setattr(timeouts, "note_lingering_body", note)
    first_ended = threading.Event()
    seen_by_second: list[bool] = []

    @task(timeout_seconds=0.2, retries=1, retry_delay_seconds=0, tags=["db"])
    def work() -> str:
        if not seen_by_second and not first_ended.is_set() and not timed_out.is_set():
            try:
                gate.wait()  # blocked in C: the timeout cannot interrupt it
            finally:
                first_ended.set()
            return "first"
        seen_by_second.append(first_ended.is_set())
        return "second"

    @flow
    def my_flow() -> State:
        return work(return_state=True)  # type: ignore[no-any-return]

    states: list[State] = []
    runner = threading.Thread(target=lambda: states.append(my_flow()), daemon=True)
    runner.start()
    assert timed_out.wait(WITHIN)
    gate.set()
    runner.join(WITHIN)
    assert not runner.is_alive()
    (state,) = states
    assert state.is_completed() and state.result() == "second"
    assert seen_by_second == [True]
    assert get_client().read_limit("tag:db").active_slots == 0


def test_a_timed_out_flow_body_leaves_the_slots_of_its_running_tasks_alone(
    gate: threading.Event,
) -> None:
    # The flow body is interrupted at its timeout and its leftovers released;
    # the task it submitted runs on in another thread (with a copy of the
    # body's context) and keeps its slot until it ends.
    client = get_client()
    client.create_limit("db", 1)
    holding = threading.Event()
    body_ended = threading.Event()

    @task
    def hold_db() -> str:
        with sync_concurrency("db"):
            holding.set()
            gate.wait()
        return "done"

    @flow(timeout_seconds=0.3)
    def my_flow() -> None:
        hold_db.submit()
        try:
            holding.wait(WITHIN)
            spin(WITHIN)  # interrupted at the timeout
        finally:
            body_ended.set()

    runner = threading.Thread(target=lambda: my_flow(return_state=True), daemon=True)
    runner.start()
    assert body_ended.wait(WITHIN)
    assert holding.is_set()
    with pytest.raises(ConcurrencySlotAcquisitionError), sync_concurrency("db", max_retries=0):
        raise AssertionError("the running task's slot was released under it")
    gate.set()
    runner.join(WITHIN)
    with sync_concurrency("db", timeout_seconds=WITHIN):
        pass


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


class FakeHeld:
    """Stands for HeldSlots: a release that fails the first time it is tried."""

    def __init__(self, fail_first: bool, interrupt: BaseException | None = None) -> None:
        self._interrupt = interrupt or KeyboardInterrupt()
        self.released = False
        self.names = ("db",)
        self.lease_id = "lease"
        self._fail = fail_first

    def release(self) -> None:
        if self._fail:
            self._fail = False
            raise self._interrupt  # as the timeout's interrupt landing in the release would
        self.released = True


def test_leftovers_released_again_finish_what_an_interrupt_cut_short() -> None:
    for interrupt in (KeyboardInterrupt(), TaskRunTimeout("an Exception, caught per slot")):
        scope = BodyScope()
        first = FakeHeld(fail_first=True, interrupt=interrupt)
        second = FakeHeld(fail_first=False)
        scope.add(first)  # type: ignore[arg-type]
        scope.add(second)  # type: ignore[arg-type]
        _to_the_end(scope.release_leftovers)
        assert first.released and second.released
