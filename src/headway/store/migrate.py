"""Bring a store's schema to the newest revision, only when it is not already there.

The check is one query on the raw connection; Alembic and SQLAlchemy are
imported only when a migration must run. Concurrent first uses (several
processes opening a new store) are serialised by a file lock on SQLite and an
advisory lock on PostgreSQL, so the history runs once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from headway.exceptions import StoreTooNew
from headway.store.db import Database
from headway.store.dialects import sqlite_path
from headway.store.migrations import HEAD, KNOWN

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6865_6164  # "head"


def current_revision(db: Database) -> str | None:
    """The revision recorded in the store, or None for a new store."""
    try:
        with db.read() as tx:
            row = tx.one("SELECT version_num FROM alembic_version")
    except Exception as exc:  # missing table: a new store
        if "alembic_version" in str(exc) or "no such table" in str(exc):
            return None
        raise
    return None if row is None else str(row[0])


def check_not_newer(revision: str | None) -> None:
    """Refuse a store a newer headway upgraded (a revision this history does not hold).

    An older headway would otherwise run against the newer schema silently,
    writing rows without the columns it does not know of.
    """
    if revision is not None and revision not in KNOWN:
        raise StoreTooNew(
            f"this store was upgraded to {revision} by a newer headway; upgrade headway"
        )


def ensure_schema(db: Database) -> bool:
    """Migrate the store to HEAD if needed; True when a migration ran.

    Raises :class:`StoreTooNew` when the store is at a revision newer than HEAD.
    """
    revision = current_revision(db)
    if revision == HEAD:
        return False
    check_not_newer(revision)
    with _migration_lock(db):
        revision = current_revision(db)
        if revision == HEAD:
            return False
        check_not_newer(revision)
        upgrade(db.url)
    return True


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

    with _migration_lock(db):
        command.downgrade(alembic_config(db.url), "base")
        db.close()
        command.upgrade(alembic_config(db.url), "head")


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    if db.dialect.name == "sqlite":
        lock_path = sqlite_path(db.url).with_suffix(".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    import psycopg

    from headway.store.dialects import postgres_conninfo

    with psycopg.connect(postgres_conninfo(db.url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_KEY,))
