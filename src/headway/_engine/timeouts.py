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
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from headway._engine.interrupts import Body, cancellable
from headway.concurrency._scopes import note_lingering_body
from headway.exceptions import TaskRunTimeout

if TYPE_CHECKING:
    from headway.client.base import Client

T = TypeVar("T")


def timeout_error(kind: str, name: str, seconds: float) -> TaskRunTimeout:
    """The error of a run that passed its timeout."""
    return TaskRunTimeout(f"{kind} {name!r} timed out after {seconds:g} s")


def call_with_timeout(
    fn: Callable[[], T],
    seconds: float,
    error: TaskRunTimeout,
    *,
    flow_run_id: str | None = None,
    client: Client | None = None,
) -> T:
    """``fn()``, or ``error`` raised once ``seconds`` pass.

    With ``flow_run_id``, the body is also interrupted when that flow run is
    cancelled (:mod:`headway._engine.interrupts`); the caller then gets the
    interrupt once the body has ended.
    """
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()
    body = Body(fn)

    def target() -> None:
        try:
            box["value"] = ctx.run(body.run)
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    with cancellable(body, flow_run_id, client):
        helper = threading.Thread(target=target, name="headway-timeout", daemon=True)
        helper.start()
        if not done.wait(seconds) and body.interrupt(type(error)):
            note_lingering_body(done)
            raise error
        done.wait()  # ended, or interrupted by a cancel just before the deadline
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
