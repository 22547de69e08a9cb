"""Body: interrupted only while it runs, at most once; a body not started never starts;
nested bodies hand an interrupt to the outermost one interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import pytest

from headway._engine.interrupts import (
    AsyncBody,
    Body,
    TaskRunCancelled,
    cancellable,
    enclosing_interrupted,
    interrupt_flow_run,
)


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


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_an_interrupt_of_an_enclosing_body_goes_on_through_the_inner_one() -> None:
    # A flow's code calling a task directly: two bodies in one thread.
    inner_started = threading.Event()
    seen: dict[str, object] = {}

    def task_code() -> None:
        inner_started.set()
        while True:
            time.sleep(0.005)

    inner = Body(task_code)

    def flow_code() -> None:
        try:
            inner.run()
        except TaskRunCancelled:
            # Where the task engine catches it: the flow around it was interrupted.
            seen["enclosing"] = enclosing_interrupted()
            raise
        seen["went on"] = True

    outer = Body(flow_code)

    def target() -> None:
        try:
            outer.run()
        except TaskRunCancelled as exc:
            seen["outer"] = exc
        seen["after"] = enclosing_interrupted()

    thread = _in_thread(target)
    assert inner_started.wait(10)
    assert outer.interrupt(TaskRunCancelled)
    thread.join(10)
    assert not thread.is_alive()
    assert seen["enclosing"] is True and "went on" not in seen
    assert isinstance(seen["outer"], TaskRunCancelled)
    assert seen["after"] is False  # the interrupted body has ended: nothing encloses now


def test_bodies_interrupted_together_raise_once_from_the_outermost() -> None:
    # The watch interrupts a flow's code and the task it called (outer first):
    # one exception unwinds both, and nothing is raised after them.
    inner_started = threading.Event()
    seen: dict[str, object] = {}

    def task_code() -> None:
        inner_started.set()
        while True:
            time.sleep(0.005)

    inner = Body(task_code)
    outer = Body(inner.run)

    def target() -> None:
        try:
            outer.run()
        except TaskRunCancelled:
            seen["raised"] = True
        try:
            total = 0
            for i in range(200_000):  # a second exception would land here
                total += i
        except TaskRunCancelled:
            seen["late"] = True

    thread = _in_thread(target)
    assert inner_started.wait(10)
    assert interrupt_flow_run_of(outer, inner) == 2
    thread.join(10)
    assert not thread.is_alive()
    assert seen == {"raised": True}
    assert outer.interrupted is TaskRunCancelled and inner.interrupted is TaskRunCancelled


def interrupt_flow_run_of(*bodies: Body) -> int:
    """Register ``bodies`` under one flow run (in any order) and interrupt it."""
    with contextlib.ExitStack() as stack:
        for body in reversed(bodies):
            stack.enter_context(cancellable(body, "run-together", None))
        return interrupt_flow_run("run-together")


def test_an_inner_body_interrupted_alone_leaves_the_enclosing_one_running() -> None:
    inner_started = threading.Event()
    seen: dict[str, object] = {}

    def task_code() -> None:
        inner_started.set()
        while True:
            time.sleep(0.005)

    inner = Body(task_code)

    def flow_code() -> str:
        try:
            inner.run()
        except TaskRunCancelled:
            seen["enclosing"] = enclosing_interrupted()
        return "went on"

    outer = Body(flow_code)
    thread = _in_thread(lambda: seen.setdefault("result", outer.run()))
    assert inner_started.wait(10)
    assert inner.interrupt(TaskRunCancelled)
    thread.join(10)
    assert seen == {"enclosing": False, "result": "went on"}


def test_an_interrupt_as_the_body_ends_is_never_raised_after_it() -> None:
    # Interrupts sent at every moment of a body's end: each is raised inside
    # body.run() or not at all, never in the code that runs after it.
    late: list[int] = []
    for attempt in range(200):
        started = threading.Event()
        spins = attempt % 50

        def code(spins: int = spins, started: threading.Event = started) -> int:
            started.set()
            total = 0
            for i in range(spins * 20):
                total += i
            return total

        body = Body(code)

        def target(body: Body = body, attempt: int = attempt) -> None:
            with contextlib.suppress(TaskRunCancelled):
                body.run()
            try:
                total = 0
                for i in range(20_000):  # the engine's code after the body
                    total += i
            except TaskRunCancelled:
                late.append(attempt)

        thread = _in_thread(target)
        assert started.wait(10)
        body.interrupt(TaskRunCancelled)
        thread.join(10)
        assert not thread.is_alive()
    assert late == []


def test_nested_async_bodies_send_one_cancel_and_the_outermost_takes_it_back() -> None:
    async def scenario() -> dict[str, object]:
        seen: dict[str, object] = {}
        outer = AsyncBody()
        inner = AsyncBody()
        running = asyncio.Event()

        async def task_code() -> None:
            running.set()
            await asyncio.sleep(60)

        async def interrupt_both() -> None:
            await running.wait()
            # Both cancels are queued on the loop before it runs either (the
            # watch sends them from its thread, through the same queue).
            assert inner.interrupt(TaskRunCancelled) and outer.interrupt(TaskRunCancelled)

        helper = asyncio.create_task(interrupt_both())
        try:
            with outer:
                try:
                    with inner:
                        await task_code()
                except asyncio.CancelledError:
                    seen["inner owns"] = inner.owns_cancel()
                    raise
        except asyncio.CancelledError:
            seen["outer owns"] = outer.owns_cancel()
        await helper
        task = asyncio.current_task()
        assert task is not None
        seen["cancelling"] = task.cancelling()
        await asyncio.sleep(0)  # the task goes on: no cancel left to raise
        return seen

    assert asyncio.run(scenario()) == {"inner owns": False, "outer owns": True, "cancelling": 0}
