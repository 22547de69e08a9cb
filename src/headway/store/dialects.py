"""Every difference between SQLite and PostgreSQL, in one place.

Queries elsewhere in ``store/`` are written once, with ``:name`` parameters;
a :class:`Dialect` turns them into what the driver wants and supplies the few
clauses that differ (how a write transaction begins, row locks).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headway.store.files import private_file

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@dataclass
class Dialect:
    """How to talk to one kind of database."""

    name: str
    begin_write: str
    begin_read: str
    for_update: str
    #: Row locks taken only where free this instant (rows others hold are skipped);
    #: empty where writers are serialized anyway.
    skip_locked: str = ""
    #: A statement queuing a notification that is delivered when the transaction
    #: commits (and dropped if it rolls back); None where the database has none.
    notify_sql: str | None = None
    #: Whether a process should run its write transactions one at a time.
    serialize_writes: bool = False
    #: The names of the tables in the database (its current schema on PostgreSQL).
    list_tables: str = ""
    #: Writers lock the limit rows they change, in name order (``for_update``);
    #: False where a write transaction locks the whole database anyway.
    row_locks: bool = False
    #: One statement may run as a transaction of its own (``Database.execute_alone``,
    #: no BEGIN and COMMIT round trips).
    autocommit_statements: bool = False
    #: The slot engine's acquire, release, handoff and waiter's look run as
    #: functions in the database, one statement each, so the limits' row locks
    #: are held for the database's work alone (migrations 0010 and 0011,
    #: ``store/slots/pg.py``); elsewhere they run statement by statement.
    slot_functions: bool = False
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    def sql(self, query: str) -> str:
        """``query`` with ``:name`` parameters in the driver's style (cached)."""
        converted = self._cache.get(query)
        if converted is None:
            if self.name == "postgresql":
                converted = _PARAM.sub(r"%(\1)s", query.replace("%", "%%"))
            else:
                converted = query
            self._cache[query] = converted
        return converted


SQLITE = Dialect(
    name="sqlite",
    # IMMEDIATE takes the write lock up front: two processes never both read
    # a limit and then both write it.
    begin_write="BEGIN IMMEDIATE",
    begin_read="BEGIN",
    for_update="",
    # The database allows one writer at a time anyway.
    serialize_writes=True,
    list_tables="SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'",
)

POSTGRESQL = Dialect(
    name="postgresql",
    begin_write="BEGIN",
    begin_read="BEGIN",
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    notify_sql="SELECT pg_notify(:channel, :payload)",
    list_tables=(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ),
    row_locks=True,
    autocommit_statements=True,
    slot_functions=True,
)


def dialect_for(url: str) -> Dialect:
    """The dialect of a SQLAlchemy-style URL."""
    if url.startswith("sqlite"):
        return SQLITE
    if url.startswith("postgresql"):
        return POSTGRESQL
    from headway.exceptions import ConfigurationError

    raise ConfigurationError(f"unsupported database URL {url.split(':', 1)[0]!r}")


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path`` URL."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        from headway.exceptions import ConfigurationError

        raise ConfigurationError("the embedded store needs a file path, not an in-memory database")
    return Path(path.split("?", 1)[0])


def connect_sqlite(url: str, busy_timeout: float) -> sqlite3.Connection:
    """A SQLite connection in autocommit mode (we issue BEGIN ourselves), WAL on."""
    path = sqlite_path(url)
    # Made here, 0600 in a 0700 directory, before SQLite would make it world-readable.
    private_file(path)
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        # Switching to WAL rewrites the file's header: only in a file that is new
        # or headway's already, never in another application's database.
        try:
            tables = [r[0] for r in conn.execute(SQLITE.list_tables)]
            refuse_foreign(url, tables)
        except BaseException:
            conn.close()
            raise
        conn.execute("PRAGMA journal_mode = WAL")
    # WAL + NORMAL: a commit survives a process crash; only an OS crash can lose
    # the last transactions, and never corrupts the file.
    conn.execute("PRAGMA synchronous = NORMAL")
    # No checkpoint inside COMMIT: copying the WAL back into the database (and
    # syncing it) there would hold every other writer for milliseconds. The
    # store checkpoints beside the writers instead (Database._checkpoint_soon);
    # SQLite's own, in a COMMIT, is left only as a bound should the WAL outgrow
    # them (a writer that never pauses): 10,000 pages, about 40 MB.
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    return conn


def refuse_foreign(url: str, tables: Sequence[str]) -> None:
    """Raise StoreNotUsable when ``tables`` are another application's, not headway's.

    A headway database records its history in ``alembic_version`` from its
    first migration on (each runs in one transaction); tables without it were
    made by someone else, and headway must not add its own among them.
    """
    if not tables or "alembic_version" in tables:
        return
    from headway.exceptions import StoreNotUsable

    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    raise StoreNotUsable(
        f"the database at {url} is not headway's (it holds {shown}): headway leaves it"
        " alone; point HEADWAY_DATABASE_URL (or HEADWAY_HOME) at a new or headway database"
    )


def postgres_conninfo(url: str) -> str:
    """A psycopg conninfo URI from a SQLAlchemy ``postgresql+psycopg://`` URL."""
    scheme, rest = url.split("://", 1)
    del scheme
    return "postgresql://" + rest


def connect_postgres(url: str, application_name: str | None = None) -> Any:
    """A psycopg connection in autocommit mode (we issue BEGIN ourselves).

    TCP keepalives let a connection to a vanished server fail in seconds rather
    than hang for the kernel's default two hours. ``application_name`` names the
    session in ``pg_stat_activity``.
    """
    import psycopg

    conn = psycopg.connect(
        postgres_conninfo(url),
        application_name=application_name,
        autocommit=True,
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )
    conn.adapters.register_dumper(str, _nul_safe_str_dumper())
    return conn


_NUL_SAFE_DUMPER: Any = None


def _nul_safe_str_dumper() -> Any:
    """psycopg's text dumper, with NUL characters replaced by U+FFFD.

    PostgreSQL text cannot hold NUL (SQLite can): without this a log line, a state
    message or a task name carrying one would fail its whole write (a lost log
    batch, a run stuck RUNNING). Names that matter are validated before; free
    text keeps everything but the NUL itself.
    """
    global _NUL_SAFE_DUMPER
    if _NUL_SAFE_DUMPER is None:
        from psycopg.types.string import StrDumperUnknown

        class NulSafeStrDumper(StrDumperUnknown):
            def dump(self, obj: str) -> Any:
                if "\x00" in obj:
                    obj = obj.replace("\x00", "\ufffd")
                return super().dump(obj)

        _NUL_SAFE_DUMPER = NulSafeStrDumper
    return _NUL_SAFE_DUMPER


def connection_usable(conn: Any) -> bool:
    """False for a connection known to be closed or broken (PostgreSQL only knows)."""
    return not (getattr(conn, "closed", False) or getattr(conn, "broken", False))


def is_transient_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` aborted a transaction that may simply be run again.

    PostgreSQL ends one of two transactions that wait on each other's row locks
    (deadlock) or that cannot both be serialised; nothing was written, and
    running the whole transaction again succeeds. SQLite never does this (its
    writers are serialised by ``BEGIN IMMEDIATE``).
    """
    if not type(exc).__module__.startswith("psycopg"):
        return False
    import psycopg

    return isinstance(exc, psycopg.errors.TransactionRollback)


def is_out_of_range(exc: BaseException) -> bool:
    """Whether a statement failed because a number it was given does not fit its column.

    sqlite3 refuses to bind an int past 64 bits (OverflowError); PostgreSQL
    answers SQLSTATE 22003 (numeric value out of range).
    """
    if isinstance(exc, OverflowError):
        return True
    return type(exc).__module__.startswith("psycopg") and getattr(exc, "sqlstate", "") == "22003"


def fails_whole_pass(exc: BaseException) -> bool:
    """Whether a background pass that met ``exc`` should stop and try again later.

    True when the store itself failed (unreachable, busy, a transaction the
    database aborted): every record would fail alike, and none is to blame.
    Anything else was caused by the record at hand, which the pass skips.
    """
    from headway.exceptions import StoreError

    # SQLite's locking and I/O failures (OperationalError) are the store's too.
    if isinstance(exc, StoreError | sqlite3.OperationalError):
        return True
    return is_transient_conflict(exc)


#: What a PostgreSQL server that is down, restarting, failing over or out of
#: connection slots answers a new connection with (a wrong password or database
#: name is not among them).
_UNREACHABLE = (
    "connection refused",
    "shutting down",
    "starting up",
    "in recovery",
    "not yet accepting connections",
    "closed the connection",
    "connection reset",
    "timeout expired",
    "no route to host",
    "network is unreachable",
    # Every connection slot taken (by other servers, for a moment): wait for one.
    "too many clients",
    "remaining connection slots are reserved",
)


def server_unreachable(exc: BaseException) -> bool:
    """Whether a failed connection attempt means the server is (for now) not there."""
    text = str(exc).lower()
    return any(marker in text for marker in _UNREACHABLE)


def terminated_by_server(exc: BaseException) -> bool:
    """Whether PostgreSQL itself ended the session (shutdown, crash recovery, not ready).

    It answers so instead of carrying out the statement: a COMMIT that gets this
    answer did not commit. (A connection that just drops gives no such answer.)
    """
    return getattr(exc, "sqlstate", None) in ("57P01", "57P02", "57P03")


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the database connection itself failed (not the query).

    A PostgreSQL server restarted, a network drop, an administrator terminating
    the backend: the connection must be replaced, and the error is the store
    being unreachable rather than a bug in a statement.
    """
    module = type(exc).__module__
    if not module.startswith("psycopg"):
        return False
    import psycopg

    if isinstance(exc, psycopg.errors.TransactionRollback):
        return False  # deadlock or serialization failure: the connection is fine
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
