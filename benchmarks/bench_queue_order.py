"""FIFO order under contention, seen from the database: out-of-order departures from a queue.

Callers cannot order their own requests by their clocks: two that queue within
one transaction of each other look simultaneous. The store can, since every
queued request gets a row in ``waiters`` with its place (``priority``, then
``seq``); a request leaves its rows when it is granted (or when it gives up,
which the contention benchmark's callers never do: they wait without a timeout).

:class:`QueueOrder` reads a limit's rows over and over from its own connection
(SQLite in WAL mode or PostgreSQL: each read a consistent snapshot, taking no
lock a writer waits on). Between two snapshots, a request that left while one
ahead of it (higher priority, or same priority and a smaller ``seq``) stayed
left out of order: with every request asking for one slot, that is a grant out
of FIFO order. Requests that come and go between two reads are not seen; the
figure printed with the count is how many departures were checked against a
request still waiting ahead or behind them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: The place of every request queued on a limit: waiter, priority, sequence.
QUEUE_SQL = "SELECT waiter_id, priority, seq FROM waiters WHERE limit_name = {mark}"


class QueueOrder:
    """Watches ``limit``'s queue while in its ``with`` block; counts out-of-order departures."""

    def __init__(self, connect: Callable[[], Any], mark: str, limit: str, every: float) -> None:
        self._connect = connect
        self._query = QUEUE_SQL.format(mark=mark)
        self._limit = limit
        self._every = every
        self.snapshots = 0
        self.checked = 0
        self.out_of_order = 0
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueueOrder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception as exc:  # reported with the figures, not raised in a thread
            self.error = f"{type(exc).__name__}: {exc}"
            return
        try:
            before: dict[str, tuple[int, int]] = {}
            while not self._stop.wait(self._every):
                rows = conn.execute(self._query, (self._limit,)).fetchall()
                # Higher priority first, then the earlier place: a smaller key is ahead.
                now = {str(w): (-int(p), int(s)) for w, p, s in rows}
                self.snapshots += 1
                self._compare(before, now)
                before = now
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def _compare(self, before: dict[str, tuple[int, int]], now: dict[str, tuple[int, int]]) -> None:
        left = [key for wid, key in before.items() if wid not in now]
        if not left:
            return
        stayed = [key for wid, key in before.items() if wid in now]
        if not stayed:
            return
        first_staying = min(stayed)
        for key in left:
            self.checked += 1
            if key > first_staying:
                self.out_of_order += 1

    def summary(self) -> str:
        """One line: out-of-order departures, of how many checked, over how many reads."""
        if self.error:
            return f"queue order not checked: {self.error}"
        return (
            f"{self.out_of_order} out-of-order grants in {self.checked} departures checked"
            f" against a request still queued ({self.snapshots} reads of the queue)"
        )


def sqlite_watcher(path: str, limit: str, every: float = 0.005) -> QueueOrder:
    """A :class:`QueueOrder` on the embedded store's file (read only)."""
    import sqlite3

    def connect() -> Any:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn

    return QueueOrder(connect, "?", limit, every)


def postgres_watcher(url: str, limit: str, every: float = 0.005) -> QueueOrder:
    """A :class:`QueueOrder` on a PostgreSQL store (``url`` as psycopg takes it)."""
    import psycopg

    def connect() -> Any:
        return psycopg.connect(url, autocommit=True)

    return QueueOrder(connect, "%s", limit, every)
