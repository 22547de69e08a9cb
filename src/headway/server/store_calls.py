"""Store calls of the slot hot path, run off the event loop on threads of their own.

A slot request is one short blocking store transaction. Through anyio's
worker threads (or ``run_in_executor``) each call pays for a capacity
limiter, chained futures and their callbacks; here a call is one queue put,
and its result comes back with one ``call_soon_threadsafe``. The slot path's
database connections are also kept apart from the pool other routes use, so
a slow dashboard query never delays a grant.

Releases and renewals go ahead of acquire attempts. A burst of a thousand
waiting requests queues a thousand attempts at once; a renewal behind them
could arrive after its lease expired (a live holder losing its slots), and a
release behind them would leave its slot idle while waiters queue for it.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: Most threads for slot calls. SQLite writes one at a time anyway. On PostgreSQL
#: a slot call mostly waits for its commit to reach the disk, and commits in flight
#: together share one flush: throughput grows with the calls in flight (8 threads:
#: ~800 pairs/s here, 16: ~960, 32: ~1,050). Each call borrows one of the store's
#: pooled connections (HEADWAY_DATABASE_POOL_SIZE bounds them, not the threads), and
#: threads start only when every running one is busy, so an idle server runs few.
SQLITE_THREADS = 2
POSTGRES_THREADS = 24


class RunsStoreCalls(Protocol):
    """Anything that runs a blocking store call off the event loop."""

    def __call__(self, fn: Callable[[], T], *, urgent: bool = False) -> Awaitable[T]:
        """Run ``fn()`` off the loop; an ``urgent`` call goes ahead of those queued."""
        ...


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
        # Two lanes: urgent calls (releases, renewals) are taken before the rest.
        self._urgent: collections.deque[Any] = collections.deque()
        self._normal: collections.deque[Any] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._most = threads
        self._threads: list[threading.Thread] = []
        # Threads waiting for a call; a call that finds none starts another thread.
        self._idle = 0
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[], T], *, urgent: bool = False) -> Awaitable[T]:
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
        with self._ready:
            (self._urgent if urgent else self._normal).append((fn, loop, future))
            self._ready.notify()
        return future

    def _take(self) -> Any:
        with self._ready:
            while not (self._urgent or self._normal):
                self._ready.wait()
            return (self._urgent or self._normal).popleft()

    def _work(self) -> None:
        while True:
            item = self._take()
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

    def close(self, timeout: float = 5.0) -> bool:
        """Finish the calls already queued, then stop the threads (waiting ``timeout`` at most).

        A call still blocked then (a store that does not answer) is left to its
        daemon thread: a stopping server must not hang on it. Returns False in
        that case: the store must then stay open under that call.
        """
        with self._lock:
            threads = list(self._threads)
            self._most = 0
        with self._ready:
            # After the calls already queued in either lane.
            self._normal.extend([None] * len(threads))
            self._ready.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)


def threads_for(dialect: str) -> int:
    """How many slot threads a server on ``dialect`` runs."""
    return POSTGRES_THREADS if dialect == "postgresql" else SQLITE_THREADS
