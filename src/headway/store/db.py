"""Connections and short transactions over the raw DB-API driver.

SQLite: one connection per thread (they are cheap). PostgreSQL: a bounded pool
(``store/pgpool.py``, ``HEADWAY_DATABASE_POOL_SIZE``); a thread borrows a
connection for one transaction or one statement and gives it back at its end,
so however many threads a process runs, it holds at most the pool's size. A
transaction is a ``with`` block; nesting joins the outer transaction (on the
same connection), so a store operation can be composed of others and stay one
transaction. Connections opened before a ``fork`` are never reused in the child.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from headway._backoff import Backoff, Retry
from headway._optional import require
from headway.exceptions import (
    HeadwayError,
    OutcomeUnknown,
    StoreError,
    StoreNotUsable,
    StoreUnavailable,
    ValidationError,
)
from headway.settings import DEFAULT_POOL_SIZE
from headway.store.checkpoint import CHECKPOINT_EVERY_COMMITS, Checkpointer
from headway.store.dialects import (
    Dialect,
    connect_sqlite,
    connection_usable,
    dialect_for,
    is_connection_error,
    is_out_of_range,
    sqlite_path,
    terminated_by_server,
)
from headway.store.queries import infra as q

if TYPE_CHECKING:
    from headway.store.pgpool import PostgresConnections

Row = tuple[Any, ...]
logger = logging.getLogger("headway.store")
#: Pauses while the database cannot be reached (restarting, failing over), up to
#: the busy timeout: nothing has been done yet, so callers simply wait.
RECONNECT_BACKOFF = Backoff(first=0.02, cap=0.5)


def _reconnect_retry(deadline: float) -> Retry:
    """The pauses of a wait for an unreachable database, until ``deadline``."""
    return RECONNECT_BACKOFF.start(within=max(0.0, deadline - time.monotonic()))


class Tx:
    """An open transaction: run statements, get rows back."""

    __slots__ = ("_cur", "_dialect")

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cur = cursor
        self._dialect = dialect

    @property
    def dialect(self) -> Dialect:
        """The database's dialect."""
        return self._dialect

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run one statement; its rows (empty when it returns none)."""
        cur = self._cur
        cur.execute(self._dialect.sql(query), params or {})
        if cur.description is None:
            return []
        return list(cur.fetchall())

    def one(self, query: str, params: dict[str, Any] | None = None) -> Row | None:
        """The first row of a statement, or None."""
        cur = self._cur
        cur.execute(self._dialect.sql(query), params or {})
        row = cur.fetchone()
        return None if row is None else tuple(row)

    def rowcount(self, query: str, params: dict[str, Any] | None = None) -> int:
        """Run one statement; how many rows it changed."""
        cur = self._cur
        cur.execute(self._dialect.sql(query), params or {})
        return int(cur.rowcount)

    def executemany(self, query: str, rows: Sequence[dict[str, Any]]) -> None:
        """Run one statement for each parameter set."""
        if rows:
            self._cur.executemany(self._dialect.sql(query), rows)

    def notify(self, channel: str, payload: str) -> bool:
        """Queue a notification on ``channel``, sent if and when this transaction commits.

        PostgreSQL delivers it (``NOTIFY``) to every session listening on the
        channel at commit, never for a rolled-back change. Returns False where the
        database has no notifications (SQLite): callers then notify after commit.
        """
        sql = self._dialect.notify_sql
        if sql is None:
            return False
        self._cur.execute(self._dialect.sql(sql), {"channel": channel, "payload": payload})
        return True


def is_damaged(exc: BaseException) -> bool:
    """Whether SQLite found the file itself unreadable ("malformed", "not a database").

    SQLite raises these as the base DatabaseError; its subclasses (busy,
    constraint, ...) are about the statement, not the file.
    """
    return type(exc) is sqlite3.DatabaseError


def damaged_message(url: str, exc: BaseException) -> str:
    """One line telling the user what is wrong with the file and what to do."""
    return (
        f"the store at {url} is damaged ({exc}): restore it from a backup, or move it"
        " away to start a new one"
    )


#: ``Database._writer_lock(blocking=False)``: another process holds the file lock.
_TAKEN = -2


class _Local(threading.local):
    #: SQLite: this thread's connection (PostgreSQL's are borrowed per transaction).
    conn: Any = None
    #: The process that set these (a forked child starts afresh).
    pid: int = 0
    depth: int = 0
    tx: Tx | None = None
    #: Inside Database.without_waiting(): the next write must not wait for a lock.
    no_wait: bool = False


class WouldWait(BaseException):
    """A first write in ``without_waiting()`` would wait (nothing done); no handler swallows it."""


class Database:
    """A database: SQLite through per-thread connections, PostgreSQL through a bounded pool.

    ``pool_size`` bounds the connections to PostgreSQL (see ``store/pgpool.py``);
    a borrower waits for a free one up to ``busy_timeout``, as a SQLite writer
    waits for the write lock.
    """

    def __init__(
        self, url: str, busy_timeout: float = 60.0, pool_size: int = DEFAULT_POOL_SIZE
    ) -> None:
        self.url = url
        self.dialect = dialect_for(url)
        self._pg: PostgresConnections | None = None
        if self.dialect.name == "postgresql":
            # Fail here, in one line naming the extra, not deep in a first query.
            require("psycopg")
            require("psycopg_pool")
            # Imported here: psycopg is an optional extra, and importing it would
            # cost every embedded (SQLite) process its start-up time.
            from headway.store.pgpool import PostgresConnections

            self._pg = PostgresConnections(url, pool_size)
        self.busy_timeout = busy_timeout
        self._local = _Local()
        # Every connection opened, with its thread and process: a connection whose
        # thread has ended is closed when the next one opens (a server's pool
        # threads come and go; PostgreSQL allows only so many connections).
        self._all: list[tuple[weakref.ref[threading.Thread], int, Any]] = []
        self._lock = threading.Lock()
        self._gate = threading.Lock()
        self._gate_pid = os.getpid()
        # The writers' file lock of this process (SQLite): opened at the first
        # write, anew in a forked child; -1 when it cannot be had.
        self._writer_fd: int | None = None
        # Write commits since the last checkpoint, and the thread that makes them.
        self._commits = 0
        self._checkpointer: Checkpointer | None = None

    def _connection(self, deadline: float) -> Any:
        """A connection for one transaction or statement: give it back with :meth:`_done`."""
        pg = self._pg
        if pg is None:
            return self._thread_connection()
        while True:
            conn = pg.borrow(deadline - time.monotonic())
            if connection_usable(conn):
                return conn
            # It broke while idle in the pool (the server went away): take another.
            pg.discard(conn)

    def _done(self, conn: Any) -> None:
        """The transaction or statement on ``conn`` ended: give back a borrowed connection."""
        if self._pg is not None:
            self._pg.give_back(conn)

    def _thread_connection(self) -> Any:
        local = self._local
        pid = os.getpid()
        if local.conn is not None and local.pid == pid and not connection_usable(local.conn):
            self._discard(local.conn)
        if local.conn is None or local.pid != pid:
            try:
                conn: Any = connect_sqlite(self.url, self.busy_timeout)
            except (sqlite3.Error, OSError) as exc:
                if is_damaged(exc):
                    raise StoreNotUsable(damaged_message(self.url, exc)) from exc
                raise StoreError(f"cannot open the store at {self.url}: {exc}") from exc
            local.conn, local.pid, local.depth, local.tx = conn, pid, 0, None
            orphans = []
            with self._lock:
                kept = []
                for owner, owner_pid, other in self._all:
                    thread = owner()
                    if owner_pid == pid and (thread is None or not thread.is_alive()):
                        orphans.append(other)
                    else:
                        kept.append((owner, owner_pid, other))
                kept.append((weakref.ref(threading.current_thread()), pid, conn))
                self._all = kept
            for other in orphans:
                try:
                    other.close()
                except Exception:
                    pass
        return local.conn

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction; on SQLite it holds the write lock from the start."""
        with self._transaction(self.dialect.begin_write) as tx:
            yield tx

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Within: the first write transaction raises :class:`WouldWait` instead of waiting.

        For a caller on an event loop (asyncio ``concurrency()``): a slot
        transaction on an uncontended embedded store takes tens of
        microseconds, less than handing it to a thread and back, but it must
        never block the loop behind another writer. Only the first write is
        guarded (WouldWait is raised before anything is done, so the caller can
        simply do it elsewhere); reads of a WAL file never wait. PostgreSQL (a
        network round trip) always raises.
        """
        local = self._local
        if not self.dialect.serialize_writes:
            raise WouldWait("a networked store: every statement is a round trip")
        before, local.no_wait = local.no_wait, True
        try:
            yield
        finally:
            local.no_wait = before

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction (a consistent snapshot)."""
        with self._transaction(self.dialect.begin_read) as tx:
            yield tx

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Tx]:
        local = self._local
        if local.depth and local.pid == os.getpid() and local.tx is not None:
            # Join the outer transaction: callers compose operations into one.
            local.depth += 1
            try:
                yield local.tx
            finally:
                local.depth -= 1
            return
        gate, writer = None, -1
        if begin is self.dialect.begin_write and self.dialect.serialize_writes:
            # One writer at a time per process, queued on a lock: SQLite would
            # otherwise make the others sleep in its busy handler (milliseconds
            # each time), which under a server's thread pool costs more than the
            # transactions themselves.
            gate = self._write_gate()
            if local.no_wait:
                local.no_wait = False  # later writes of the caller may wait
                if not gate.acquire(blocking=False):
                    raise WouldWait("another thread of this process is writing")
                writer = self._writer_lock(blocking=False)
                if writer == _TAKEN:
                    gate.release()
                    raise WouldWait("another process is writing")
            else:
                gate.acquire()
                writer = self._writer_lock()
        try:
            conn, cur = self._begin(begin)
        except BaseException:
            if gate is not None:
                self._release_write(gate, writer)
            raise
        tx = Tx(cur, self.dialect)
        local.depth, local.tx, local.pid = 1, tx, os.getpid()
        kept = True  # False: the connection failed, and is discarded rather than given back
        try:
            yield tx
        except BaseException as exc:
            local.depth, local.tx = 0, None
            try:
                cur.execute(q.ROLLBACK)
            except Exception:
                kept = False
            if is_connection_error(exc):
                kept = False
                # Before COMMIT: the database rolled the transaction back.
                raise StoreUnavailable(
                    f"lost the connection to the store (nothing was written): {exc}"
                ) from exc
            if is_damaged(exc):
                raise StoreNotUsable(damaged_message(self.url, exc)) from exc
            if is_out_of_range(exc):
                # The input, not the store: nothing was written (rolled back above).
                raise ValidationError(
                    f"a number is out of the range the store holds: {exc}"
                ) from exc
            raise
        else:
            local.depth, local.tx = 0, None
            try:
                cur.execute(q.COMMIT)
            except Exception as exc:
                kept = False
                if terminated_by_server(exc):
                    raise StoreUnavailable(
                        f"the store ended the session before commit (nothing was written): {exc}"
                    ) from exc
                if is_connection_error(exc):
                    # The answer to COMMIT was lost: it may or may not have committed.
                    raise StoreError(f"lost the connection to the store: {exc}") from exc
                raise
        finally:
            try:
                cur.close()
            finally:
                if kept:
                    self._done(conn)
                else:
                    self._discard(conn)
                if gate is not None:
                    self._release_write(gate, writer)
                    self._commits += 1
                    if self._commits >= CHECKPOINT_EVERY_COMMITS:
                        self._checkpoint_soon()

    def execute_alone(self, query: str, params: dict[str, Any]) -> list[Row]:
        """Run one statement as a transaction of its own (PostgreSQL's autocommit).

        Inside an open transaction of this thread it simply joins it. A single
        statement skips the BEGIN and COMMIT round trips, which on the slot hot
        path cost PostgreSQL more than the statement. When the connection fails
        under it, whether it committed is unknown: :class:`OutcomeUnknown` is
        raised (the caller can tell by looking), and the connection is replaced.
        When the database had ended the session before the statement (a restart,
        an administrator), nothing ran: it is run again on another connection.
        """
        local = self._local
        if local.depth and local.pid == os.getpid() and local.tx is not None:
            return local.tx.execute(query, params)
        deadline = time.monotonic() + self.busy_timeout
        retry: Retry | None = None  # made at the first failure, off the hot path
        while True:
            try:
                conn = self._connection(deadline)
            except StoreUnavailable:
                retry = retry or _reconnect_retry(deadline)
                if not retry.pause():
                    raise
                continue
            cur = conn.cursor()
            try:
                cur.execute(self.dialect.sql(query), params)
                rows = [] if cur.description is None else list(cur.fetchall())
            except BaseException as exc:
                cur.close()
                if not is_connection_error(exc):
                    self._done(conn)
                    raise
                self._discard(conn)
                if not terminated_by_server(exc):
                    raise OutcomeUnknown(f"lost the connection to the store: {exc}") from exc
                # A pooled connection may have been ended while idle (every one
                # of them, after a restart): the statement never ran.
                retry = retry or _reconnect_retry(deadline)
                if not retry.pause():
                    raise StoreUnavailable(
                        f"the store ended the session (nothing was written): {exc}"
                    ) from exc
                continue
            cur.close()
            self._done(conn)
            return rows

    def _write_gate(self) -> threading.Lock:
        if self._gate_pid != os.getpid():
            # A lock held by another thread at fork time would stay held in the child;
            # and the file lock's descriptor is the parent's (flock's owner is the
            # open file, so the child must open its own).
            self._gate, self._gate_pid = threading.Lock(), os.getpid()
            self._writer_fd = None
        return self._gate

    def _writer_lock(self, *, blocking: bool = True) -> int:
        """Take the writers' file lock (the caller holds the gate); its descriptor, or -1.

        Not ``blocking``: ``_TAKEN`` when another process holds it.

        SQLite's own lock keeps writes one at a time; but a process that finds it
        taken sleeps in SQLite's busy handler (1, 2, 5, 10 ms and longer), and
        wakes late: under contention from several processes the lock then sits
        free while every writer sleeps. Waiting for a ``flock`` on a file beside
        the database instead, the kernel wakes the next writer the moment the
        last one lets go. It only orders headway's writers: correctness still
        rests on SQLite's lock (any other writer is met by the busy handler, as
        before), so a file that cannot be opened just leaves that to SQLite.
        """
        fd = self._writer_fd
        if fd is None:
            try:
                path = f"{sqlite_path(self.url)}-writer"
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except (OSError, HeadwayError):
                fd = -1
            self._writer_fd = fd
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return _TAKEN
            except OSError:
                return -1
        return fd

    def _checkpoint_soon(self) -> None:
        """Ask this process's checkpointer thread to copy the WAL into the database.

        A PASSIVE checkpoint holds no writer back (it takes no write lock), so
        it runs beside the writers rather than inside one's COMMIT, as
        SQLite's automatic checkpoint would.
        """
        self._commits = 0
        checkpointer = self._checkpointer
        if checkpointer is None or checkpointer.pid != os.getpid():
            checkpointer = self._checkpointer = Checkpointer(self)
        checkpointer.due.set()

    @staticmethod
    def _release_write(gate: threading.Lock, writer: int) -> None:
        if writer >= 0:
            try:
                fcntl.flock(writer, fcntl.LOCK_UN)
            except OSError:
                pass
        gate.release()

    def _begin(self, begin: str) -> tuple[Any, Any]:
        """A connection and a cursor with a transaction begun on it."""
        # SQLite's busy handler does not cover every lock upgrade case; retry
        # BEGIN itself until the busy timeout so callers simply wait and succeed.
        # A PostgreSQL connection that died while idle fails at BEGIN, before
        # anything ran: replace it and go on. While the server cannot be reached
        # (restarting, failing over), wait for it up to the busy timeout, as
        # SQLite callers wait for a lock: nothing has been done yet.
        deadline = time.monotonic() + self.busy_timeout
        retry: Retry | None = None  # made at the first failure, off the hot path
        while True:
            try:
                conn = self._connection(deadline)
            except StoreUnavailable:
                retry = retry or _reconnect_retry(deadline)
                if not retry.pause():
                    raise
                continue
            cur = conn.cursor()
            try:
                cur.execute(begin)
                return conn, cur
            except sqlite3.OperationalError as exc:
                cur.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"the store is busy: {exc}") from exc
                time.sleep(0.005)
            except BaseException as exc:
                cur.close()
                if not is_connection_error(exc):
                    self._done(conn)
                    raise
                self._discard(conn)
                retry = retry or _reconnect_retry(deadline)
                if not retry.pause():
                    raise StoreUnavailable(f"lost the connection to the store: {exc}") from exc

    def _discard(self, conn: Any) -> None:
        """Close a connection that failed (a borrowed one goes back, to be replaced)."""
        if self._pg is not None:
            self._pg.discard(conn)
            return
        local = self._local
        if local.conn is conn:
            local.conn = None
        with self._lock:
            self._all = [entry for entry in self._all if entry[2] is not conn]
        try:
            conn.close()
        except Exception:
            pass

    @contextmanager
    def borrowed(self) -> Iterator[Any]:
        """A raw DB-API connection (autocommit) for the ``with`` block, outside any transaction.

        On PostgreSQL, one of the pool's, given back at the end (closing it
        inside the block makes the pool open another); on SQLite, this thread's.
        For work that needs a session of its own (migrations under an advisory
        lock); everything else goes through :meth:`read` and :meth:`write`.
        """
        conn = self._connection(time.monotonic() + self.busy_timeout)
        try:
            yield conn
        finally:
            self._done(conn)

    @contextmanager
    def dedicated(self) -> Iterator[Any]:
        """PostgreSQL: the one connection kept outside the pool, within its budget.

        Opened for the ``with`` block and closed at its end: the wake-up
        listener's, whose ``LISTEN`` lasts as long as the session (see
        ``store/pgpool.py``). A second one while it is open is refused.
        """
        if self._pg is None:
            raise StoreError("a dedicated connection is PostgreSQL's; this store is SQLite")
        with self._pg.dedicated() as conn:
            yield conn

    def close(self) -> None:
        """Close every connection this object opened (on PostgreSQL, its pool)."""
        if self._pg is not None:
            self._pg.close()
            self._local = _Local()
            return
        with self._lock:
            entries, self._all = self._all, []
        # A forked child must not close its parent's connections (that would end
        # the parent's sessions): it only forgets them.
        conns = [conn for _, owner_pid, conn in entries if owner_pid == os.getpid()]
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
        self._local = _Local()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.due.set()  # it finds itself replaced, and ends
        writer, self._writer_fd = self._writer_fd, None
        if writer is not None and writer >= 0 and self._gate_pid == os.getpid():
            os.close(writer)
