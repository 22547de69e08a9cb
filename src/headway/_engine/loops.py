"""Running coroutines from sync code: one event loop per worker thread.

A pool thread that runs async tasks keeps one event loop for its lifetime
(creating a loop per task would cost more than most tasks). A thread that is
already inside a running loop cannot run another coroutine to completion, so
such a call runs on a short-lived helper thread instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def run_coro_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
        if loop is None or loop.is_closed():
            loop = _local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)
    return _run_on_helper_thread(coro)


def _run_on_helper_thread(coro: Coroutine[Any, Any, T]) -> T:
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:
            box["error"] = exc

    helper = threading.Thread(target=target, name="headway-async", daemon=True)
    helper.start()
    helper.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def close_thread_loop() -> None:
    """Close the current thread's loop (a pool thread that exits)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is not None and not loop.is_closed():
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    _local.loop = None
