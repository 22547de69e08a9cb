"""Bring a store's schema to the newest revision, only when it is not already there.

The check is one query on the raw connection; Alembic and SQLAlchemy are
imported only when a migration must run. Concurrent first uses (several
processes opening a new store, two servers started at once) are serialised by
a file lock on SQLite and an advisory lock on PostgreSQL, so the history runs
once: whoever gets the lock second finds the schema current.

On PostgreSQL the lock, the second look and Alembic's work all run on one
connection borrowed from the store's pool, so migrating stays within
``HEADWAY_DATABASE_POOL_SIZE`` like everything else.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headway.exceptions import StoreNotUsable, StoreTooNew
from headway.store.db import Database
from headway.store.dialects import refuse_foreign, sqlite_path
from headway.store.files import private_file
from headway.store.migrations import HEAD, KNOWN
from headway.store.queries import infra as q

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6865_6164  # "head"


def current_revision(db: Database) -> str | None:
    """The revision recorded in the store, or None for a new store."""
    try:
        with db.read() as tx:
            row = tx.one(q.SELECT_SCHEMA_REVISION)
    except Exception as exc:
        if _no_history(exc):
            return None
        raise
    return None if row is None else str(row[0])


def _revision_on(conn: Any) -> str | None:
    """:func:`current_revision` on a raw PostgreSQL connection in autocommit."""
    try:
        row = conn.execute(q.SELECT_SCHEMA_REVISION).fetchone()
    except Exception as exc:
        if _no_history(exc):
            return None
        raise
    return None if row is None else str(row[0])


def _no_history(exc: BaseException) -> bool:
    # The table is missing: a new store.
    return "alembic_version" in str(exc) or "no such table" in str(exc)


def check_not_newer(revision: str | None) -> None:
    """Refuse a store a newer headway upgraded, or another application's history.

    An older headway would otherwise run against the newer schema silently,
    writing rows without the columns it does not know of.
    """
    if revision is None or revision in KNOWN:
        return
    if revision.isdigit() and len(revision) == len(HEAD) and revision > HEAD:
        raise StoreTooNew(
            f"this store was upgraded to {revision} by a newer headway; upgrade headway"
        )
    # Not one of headway's revisions (numbered 0001, 0002, ...): another application's.
    raise StoreNotUsable(
        f"the database has a schema revision headway does not know ({revision!r}):"
        " another application's; headway leaves it alone"
    )


def ensure_schema(db: Database) -> bool:
    """Migrate the store to HEAD if needed; True when a migration ran.

    Raises :class:`StoreTooNew` when the store is at a revision newer than HEAD. A
    database that is not headway's (another application's tables, or a history
    headway does not know) is refused with StoreNotUsable, untouched.
    """
    revision = current_revision(db)
    if revision == HEAD:
        return False
    check_not_newer(revision)
    _refuse_foreign(db)
    with _migration_lock(db) as conn:
        # Look again under the lock: another process may have just migrated.
        revision = current_revision(db) if conn is None else _revision_on(conn)
        if revision == HEAD:
            return False
        check_not_newer(revision)
        if conn is None:
            upgrade(db.url)
        else:
            _run_on(conn, db.url, [("upgrade", "head")])
    return True


def _refuse_foreign(db: Database) -> None:
    with db.read() as tx:
        tables = [r[0] for r in tx.execute(db.dialect.list_tables)]
    refuse_foreign(db.url, tables)


def alembic_config(url: str) -> Any:
    """An Alembic Config for this project's history and ``url``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run the history up to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def reset(db: Database) -> None:
    """Drop every table and build the schema anew (``headway db reset``)."""
    from alembic import command

    with _migration_lock(db) as conn:
        if conn is None:
            command.downgrade(alembic_config(db.url), "base")
            db.close()
            command.upgrade(alembic_config(db.url), "head")
        else:
            _run_on(conn, db.url, [("downgrade", "base"), ("upgrade", "head")])
    # The other connections may hold statements prepared on the dropped tables.
    db.close()


def _run_on(conn: Any, url: str, steps: list[tuple[str, str]]) -> None:
    """Run Alembic commands (``("upgrade", "head")``, ...) on a borrowed PostgreSQL connection.

    SQLAlchemy runs them in the transactions it begins implicitly, so the
    connection leaves autocommit; it is closed at the end (the pool then opens
    another in its place), which also ends the session's advisory lock.
    """
    from alembic import command
    from sqlalchemy import create_engine, pool

    conn.autocommit = False
    # The URL names only the dialect: the connection is the one given.
    engine = create_engine(
        url.split("://", 1)[0] + "://", creator=lambda: conn, poolclass=pool.NullPool
    )
    with engine.connect() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        for name, revision in steps:
            getattr(command, name)(config, revision)
            # Alembic leaves committing a connection it was given to its owner.
            connection.commit()


@contextmanager
def _migration_lock(db: Database) -> Iterator[Any]:
    """Held by one process at a time per store; yields the PostgreSQL connection holding it.

    SQLite: a file lock next to the database, and None. PostgreSQL: a session
    advisory lock on a connection borrowed from the pool, which the caller
    uses for everything it does under the lock (a second connection could wait
    for the very pool this one came from).
    """
    if db.dialect.name == "sqlite":
        lock_path = sqlite_path(db.url).with_suffix(".migrate.lock")
        private_file(lock_path)
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield None
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    with db.borrowed() as conn:
        conn.execute(q.TAKE_MIGRATION_LOCK, (_PG_LOCK_KEY,))
        try:
            yield conn
        finally:
            if not conn.closed:
                # A closed session (after a migration) has released it already.
                with contextlib.suppress(Exception):
                    conn.execute(q.RELEASE_MIGRATION_LOCK, (_PG_LOCK_KEY,))
