"""Body: interrupted only while it runs, at most once; a body not started never starts."""

from __future__ import annotations

import threading
import time

import pytest

from headway._engine.interrupts import Body, TaskRunCancelled, cancellable, interrupt_flow_run


def test_a_body_interrupted_before_it_starts_never_runs() -> None:
    ran = []
    body = Body(lambda: ran.append(1))
    assert body.interrupt(TaskRunCancelled)
    assert not body.interrupt(TaskRunCancelled)  # at most once
    with pytest.raises(TaskRunCancelled):
        body.run()
    assert ran == []


def test_a_body_that_ended_is_not_interrupted() -> None:
    body = Body(lambda: 7)
    assert body.run() == 7
    assert not body.interrupt(TaskRunCancelled)


def test_a_running_body_is_interrupted_in_its_thread_and_its_finally_runs() -> None:
    started, cleaned = threading.Event(), threading.Event()
    outcome: list[object] = []

    def spin() -> None:
        started.set()
        try:
            while True:  # pure Python: the interrupt lands at the next bytecode
                time.sleep(0.005)
        finally:
            cleaned.set()

    body = Body(spin)

    def target() -> None:
        try:
            with cancellable(body, "run-1", None):
                body.run()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(10)
    assert interrupt_flow_run("run-2") == 0  # another flow run: untouched
    assert interrupt_flow_run("run-1") == 1
    thread.join(10)
    assert not thread.is_alive() and cleaned.is_set()
    assert len(outcome) == 1 and isinstance(outcome[0], TaskRunCancelled)
    # It left the registry with its run: nothing more to interrupt.
    assert interrupt_flow_run("run-1") == 0


def test_cancel_interrupt_is_not_an_exception() -> None:
    # `except Exception` in task code does not swallow it.
    assert not issubclass(TaskRunCancelled, Exception)
