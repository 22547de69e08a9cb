"""Run a callable with ``timeout_seconds``.

Async code is cancelled with ``asyncio.wait_for``. Sync code cannot be stopped
from outside a thread, so it runs in a helper thread (with the caller's
context) while the caller waits up to the deadline. At the deadline the caller
raises :class:`~headway.exceptions.TaskRunTimeout` at once (the run ends FAILED
on time) and the helper thread gets the same exception raised inside it, which
takes effect at its next Python instruction: a blocking C call (a long
``time.sleep``, a socket read) finishes first. This is the price of not
killing threads, which Python cannot do safely.

Slots follow the body, not the run (see :mod:`headway.concurrency._scopes`): a
``with concurrency()`` block in the body exits at the interrupt and releases;
slots an interrupted body took and left held are released once it has ended;
and slots held around it (the task run's tag slots) wait for it too. A body
blocked in C code keeps its slots until the call returns, so a limit is never
exceeded.
"""

from __future__ import annotations

import contextvars
import ctypes
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from headway.concurrency._scopes import BodyScope, note_lingering_body
from headway.exceptions import TaskRunTimeout

T = TypeVar("T")


def timeout_error(kind: str, name: str, seconds: float) -> TaskRunTimeout:
    """The error of a run that passed its timeout."""
    return TaskRunTimeout(f"{kind} {name!r} timed out after {seconds:g} s")


def call_with_timeout(fn: Callable[[], T], seconds: float, error: TaskRunTimeout) -> T:
    """``fn()``, or ``error`` raised once ``seconds`` pass."""
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()
    scope = BodyScope()
    # Held while deciding to interrupt, and by the body as it ends: an interrupt
    # is only ever sent to a body still running, never to the cleanup after it.
    gate = threading.Lock()
    running, interrupted = [True], [False]

    def body() -> T:
        try:
            return fn()
        finally:
            with gate:
                running[0] = False

    def target() -> None:
        try:
            box["value"] = ctx.run(scope.run, body)
        except BaseException as exc:
            box["error"] = exc
        finally:
            try:
                if interrupted[0]:
                    _to_the_end(scope.release_leftovers)
            finally:
                done.set()

    helper = threading.Thread(target=target, name="headway-timeout", daemon=True)
    helper.start()
    if not done.wait(seconds):
        with gate:
            if running[0]:
                interrupted[0] = True
                _raise_in_thread(helper, type(error))
        note_lingering_body(done)
        raise error
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def await_with_timeout(awaitable: Awaitable[T], seconds: float, error: TaskRunTimeout) -> T:
    """``await awaitable``, cancelled with ``error`` once ``seconds`` pass."""
    import asyncio  # async runs only: a sync program's cold start skips asyncio

    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise error from None


def _to_the_end(cleanup: Callable[[], object]) -> None:
    # The interrupt is sent at most once, while the body runs; should it land
    # only once the body has ended, in the cleanup, the cleanup runs again.
    try:
        cleanup()
    except BaseException:
        cleanup()


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    # Asks the interpreter to raise exc_type in that thread at its next bytecode.
    ident = thread.ident
    if ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
