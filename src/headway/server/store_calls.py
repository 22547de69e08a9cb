"""Store calls of the slot hot path, run off the event loop on threads of their own.

A slot request is one short blocking store transaction. Through anyio's
worker threads (or ``run_in_executor``) each call pays for a capacity
limiter, chained futures and their callbacks; here a call is one queue put,
and its result comes back with one ``call_soon_threadsafe``. The slot path's
database connections are also kept apart from the pool other routes use, so
a slow dashboard query never delays a grant.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: Most threads for slot calls. SQLite writes one at a time anyway. On PostgreSQL
#: a slot call mostly waits for its commit to reach the disk, and commits in flight
#: together share one flush: throughput grows with the calls in flight (8 threads:
#: ~800 pairs/s here, 16: ~960, 32: ~1,050). Each thread holds a connection, and
#: threads start only when every running one is busy, so an idle server holds few.
SQLITE_THREADS = 2
POSTGRES_THREADS = 24


class RunsStoreCalls(Protocol):
    """Anything that runs a blocking store call off the event loop."""

    def __call__(self, fn: Callable[[], T]) -> Awaitable[T]: ...


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return  # the request went away; the call's effect stands (a lease expires unrenewed)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class StoreCalls:
    """``await calls(fn)`` runs ``fn()`` on the slot threads and returns its result."""

    def __init__(self, threads: int) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._most = threads
        self._threads: list[threading.Thread] = []
        # Threads waiting for a call; a call that finds none starts another thread.
        self._idle = 0
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[], T]) -> Awaitable[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._most:
                thread = threading.Thread(
                    target=self._work, name=f"headway-slots-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put((fn, loop, future))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, loop, future = item
            error: BaseException | None = None
            result = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting request, raised there
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:
                pass  # the loop has closed (the server stopped): nobody waits for it
            del item, fn, future, result, error
            with self._lock:
                self._idle += 1

    def close(self, timeout: float = 5.0) -> None:
        """Finish the calls already queued, then stop the threads (waiting ``timeout`` at most).

        A call still blocked then (a store that does not answer) is left to its
        daemon thread: a stopping server must not hang on it.
        """
        with self._lock:
            threads = list(self._threads)
            self._most = 0
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def threads_for(dialect: str) -> int:
    """How many slot threads a server on ``dialect`` runs."""
    return POSTGRES_THREADS if dialect == "postgresql" else SQLITE_THREADS
