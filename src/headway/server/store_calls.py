"""Store calls of the slot hot path, run off the event loop on a small pool of their own.

A slot request is one short blocking store transaction. Run through anyio's
worker threads it pays for a capacity limiter, a cancel scope and a queue
hand-off each time; a plain executor costs a third of that, and keeps the
slot path's database connections apart from the pool other routes use (so a
slow dashboard query never delays a grant).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

T = TypeVar("T")


class RunsStoreCalls(Protocol):
    """Anything that runs a blocking store call off the event loop."""

    def __call__(self, fn: Callable[[], T]) -> Awaitable[T]: ...


#: Threads for slot calls. SQLite writes one at a time anyway; PostgreSQL overlaps
#: round trips, each thread on its own connection.
SQLITE_THREADS = 2
POSTGRES_THREADS = 8


class StoreCalls:
    """``await calls(fn)`` runs ``fn()`` on the slot threads and returns its result."""

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="headway-slots")

    async def __call__(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


def threads_for(dialect: str) -> int:
    """How many slot threads a server on ``dialect`` runs."""
    return POSTGRES_THREADS if dialect == "postgresql" else SQLITE_THREADS
