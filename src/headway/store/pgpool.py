"""PostgreSQL connections of one process: a bounded pool and one dedicated connection.

``HEADWAY_DATABASE_POOL_SIZE`` (N, default 10) is the whole budget of a store
open in a process: it never holds more than N connections to PostgreSQL.

- N - 1 are a psycopg pool. Every thread borrows one for one transaction or one
  statement and gives it back at its end. The pool opens them as they are
  needed, one at a time, and closes those idle for ten minutes (down to one).
- One is kept aside for the wake-up listener (``store/wakeups_pg.py``): its
  ``LISTEN`` lasts as long as its session, so it cannot go back to a pool.

A borrower that finds every pooled connection in use waits its turn (first
come, first served) up to the store's busy timeout, then gets
:class:`~headway.exceptions.StoreUnavailable`; it never opens one more.
Migrations run on a pooled connection too (``store/migrate.py``). Every
connection is named ``headway:<pid>`` in ``pg_stat_activity``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from headway.exceptions import ConfigurationError, StoreError, StoreUnavailable
from headway.settings import POOL_SIZE_MIN
from headway.store.dialects import connect_postgres, server_unreachable

#: A pooled connection unused this long is closed (the pool keeps at least one).
MAX_IDLE_SECONDS = 600.0


class _QuietDiscards(logging.Filter):
    """Drops the pool's warning for a closed connection given back.

    headway gives back, closed, the connections it found broken (and the one a
    migration ran on) precisely so that the pool replaces them: not news.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("discarding closed connection")


def _quiet_discards() -> None:
    logger = logging.getLogger("psycopg.pool")
    if not any(isinstance(f, _QuietDiscards) for f in logger.filters):
        logger.addFilter(_QuietDiscards())


def application_name() -> str:
    """This process's name on its connections (``pg_stat_activity.application_name``)."""
    return f"headway:{os.getpid()}"


def open_connection(url: str) -> Any:
    """A new connection to ``url``; a failure to connect raised as headway's StoreError.

    StoreUnavailable when the server cannot be reached now (down, restarting,
    out of connection slots): waiting may help. StoreError otherwise (a wrong
    password, an unknown database): it will not.
    """
    try:
        return connect_postgres(url, application_name=application_name())
    except psycopg.Error as exc:
        if server_unreachable(exc):
            raise StoreUnavailable(f"cannot connect to the store: {exc}") from exc
        raise StoreError(f"cannot connect to the store: {exc}") from exc
    except OSError as exc:
        raise StoreError(f"cannot connect to the store: {exc}") from exc


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


class PostgresConnections:
    """At most ``size`` connections of this process to one PostgreSQL database."""

    def __init__(self, url: str, size: int) -> None:
        if size < POOL_SIZE_MIN:
            raise ConfigurationError(
                f"HEADWAY_DATABASE_POOL_SIZE must be at least {POOL_SIZE_MIN} on PostgreSQL"
                f" (one connection to borrow, one for wake-ups), got {size}"
            )
        self.url = url
        #: The budget: pooled connections plus the dedicated one.
        self.size = size
        self._pool: ConnectionPool[Any] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._dedicated = threading.Lock()
        #: Why the pool's last attempt to connect failed (None once one succeeds).
        self._failure: str | None = None
        # Pools a parent process opened before a fork: their connections are the
        # parent's sessions, so they are neither used nor closed here, and kept
        # referenced so that collecting them never touches their sockets.
        self._inherited: list[ConnectionPool[Any]] = []

    def borrow(self, timeout: float) -> Any:
        """A pooled connection (autocommit, idle), waiting up to ``timeout`` seconds for one.

        Raises StoreUnavailable when none became free in time (nothing was done:
        the call may be made again), or when the database cannot be reached.
        """
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            pool = self._open()
        try:
            return pool.getconn(timeout=timeout)
        except PoolTimeout:
            raise StoreUnavailable(self._wait_failed(timeout)) from None
        except PoolClosed:
            raise StoreError("the store was closed while waiting for a connection") from None

    def give_back(self, conn: Any) -> None:
        """Return a borrowed connection (a closed or broken one is replaced by the pool)."""
        pool = self._pool
        if pool is not None:
            try:
                pool.putconn(conn)
                return
            except ValueError:
                pass  # lent by a pool closed since (close() then a new borrow)
        _close_quietly(conn)

    def discard(self, conn: Any) -> None:
        """Close a borrowed connection that failed, and return it so the pool opens another."""
        _close_quietly(conn)
        self.give_back(conn)

    @contextmanager
    def dedicated(self) -> Iterator[Any]:
        """The one connection kept outside the pool, opened now and closed at the end.

        It is the wake-up listener's: a session that LISTENs keeps doing so until
        it ends. The budget holds one; a second caller while it is open gets
        StoreError.
        """
        if self._pid != os.getpid():
            self._after_fork()
        if not self._dedicated.acquire(blocking=False):
            raise StoreError(
                "this process already holds its dedicated connection to the store (one listener"
                " per store)"
            )
        try:
            conn = open_connection(self.url)
            try:
                yield conn
            finally:
                _close_quietly(conn)
        finally:
            self._dedicated.release()

    def close(self) -> None:
        """Close the pool: its idle connections now, borrowed ones when given back.

        A forked child closes nothing (the connections are its parent's sessions).
        The next borrow opens a new pool.
        """
        if self._pid != os.getpid():
            self._after_fork()
            return
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _open(self) -> ConnectionPool[Any]:
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            if self._pool is None:
                # Connect once here, in the caller's thread: a wrong password or
                # database name fails now with its own message, rather than after the
                # whole busy timeout of the pool's retries in the background.
                _close_quietly(open_connection(self.url))
                self._failure = None
                _quiet_discards()
                self._pool = ConnectionPool(
                    connection_class=self._connection_class(),
                    min_size=1,
                    max_size=self.size - 1,
                    max_idle=MAX_IDLE_SECONDS,
                    name=f"headway:{os.getpid()}",
                    open=True,
                )
            return self._pool

    def _after_fork(self) -> None:
        # A forked child starts with one thread, and a lock some parent thread
        # held at the fork would stay held here: start afresh.
        self._lock = threading.Lock()
        self._dedicated = threading.Lock()
        if self._pool is not None:
            self._inherited.append(self._pool)
        self._pool = None
        self._failure = None
        self._pid = os.getpid()

    def _connection_class(self) -> type[psycopg.Connection[Any]]:
        owner = self

        class Connection(psycopg.Connection[Any]):
            """Opens headway's connections for the pool, and remembers how that went."""

            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                # The pool's own conninfo and options are unused: every connection
                # is opened one way (store/dialects.py).
                del conninfo, kwargs
                try:
                    conn = connect_postgres(owner.url, application_name=application_name())
                except Exception as exc:
                    owner._failure = str(exc).strip() or type(exc).__name__
                    raise
                owner._failure = None
                return conn

        return Connection

    def _wait_failed(self, timeout: float) -> str:
        if self._failure is not None:
            return f"cannot connect to the store: {self._failure}"
        return (
            f"no connection to the store became free within {timeout:.3g} s: all"
            f" {self.size - 1} of this process's pooled connections were in use"
            f" (HEADWAY_DATABASE_POOL_SIZE={self.size}, one of them kept for wake-ups)"
        )
