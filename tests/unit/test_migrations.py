"""One Alembic history: a single head equal to ``HEAD``, and a migrated schema equal
to the declared one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headway.store import migrate
from headway.store.db import Database
from headway.store.migrations import HEAD
from helpers.postgres import fresh_postgres


def test_single_head_is_the_declared_head() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite:///unused.db"))
    assert script.get_heads() == [HEAD]


def test_migrated_schema_equals_declared_schema(tmp_path: Path) -> None:
    _migrated_equals_declared(f"sqlite:///{tmp_path / 'm.db'}")


def test_migrated_schema_equals_declared_schema_on_postgres() -> None:
    with fresh_postgres() as url:
        _migrated_equals_declared(url)


def _migrated_equals_declared(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from headway.store.schema import metadata

    db = Database(url)
    assert migrate.ensure_schema(db) is True
    assert migrate.current_revision(db) == HEAD
    assert migrate.ensure_schema(db) is False  # current: nothing runs
    db.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_history_downgrades_to_empty_and_back(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'm.db'}"
    db = Database(url)
    migrate.ensure_schema(db)
    command.downgrade(migrate.alembic_config(url), "base")
    assert migrate.current_revision(db) is None
    migrate.upgrade(url)
    assert migrate.current_revision(db) == HEAD


def _functions(db: Database, reading: str | None = None) -> list[str]:
    """headway's PostgreSQL functions, by name (only those whose body has ``reading``)."""
    query = "SELECT proname FROM pg_proc WHERE proname LIKE 'headway%'"
    if reading is not None:
        query += " AND prosrc LIKE :text"
    with db.read() as tx:
        rows = tx.execute(query + " ORDER BY proname", {"text": f"%{reading}%"})
    return [r[0] for r in rows]


def test_postgres_slot_functions_come_and_go_with_their_migration() -> None:
    """PostgreSQL's slot functions (0010 on): dropped by a downgrade, made again by an upgrade."""
    from alembic import command

    from helpers.postgres import fresh_postgres

    with fresh_postgres() as url:
        db = Database(url)
        try:
            migrate.ensure_schema(db)
            made = _functions(db)
            assert "headway_release" in made and "headway_hand_off" in made
            command.downgrade(migrate.alembic_config(url), "0009")
            assert _functions(db) == []
            command.downgrade(migrate.alembic_config(url), "base")
            assert migrate.current_revision(db) is None
            migrate.upgrade(url)
            assert migrate.current_revision(db) == HEAD
            assert _functions(db) == made
        finally:
            db.close()


def test_postgres_handoff_reads_request_names_from_0012_on() -> None:
    """0012 makes the handoff and acquire again with the waiter's names; its downgrade undoes it."""
    from alembic import command

    from helpers.postgres import fresh_postgres

    both = ["headway_acquire", "headway_hand_off"]
    with fresh_postgres() as url:
        db = Database(url)
        try:
            migrate.ensure_schema(db)
            assert _functions(db, reading="request_names") == both
            command.downgrade(migrate.alembic_config(url), "0011")
            assert _functions(db, reading="request_names") == []
            migrate.upgrade(url)
            assert _functions(db, reading="request_names") == both
        finally:
            db.close()


def test_slot_functions_are_written_with_cores_constants() -> None:
    """PostgreSQL's slot functions carry constants of ``core`` as their migrations wrote them.

    A change in ``core`` must come with a revision that makes the functions
    again: until then this fails.
    """
    import importlib.util

    from headway.core.events import HISTOGRAM_BOUNDS, SLOT_WAIT
    from headway.core.limits import EPSILON, NOT_QUEUED
    from headway.store.slots.run_waits import FINAL_STATES, NO_NEW_GRANTS

    def revision(name: str) -> Any:
        path = migrate.MIGRATIONS_DIR / "versions" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    handoff = revision("0010_slot_functions")
    acquire = revision("0011_slot_acquire_function")
    assert handoff.WAIT_BOUNDS == HISTOGRAM_BOUNDS and handoff.SLOT_WAIT == SLOT_WAIT
    assert handoff.EPSILON == acquire.EPSILON == EPSILON
    assert acquire.NOT_QUEUED == NOT_QUEUED
    assert set(acquire.FINAL_STATES) == FINAL_STATES
    assert set(acquire.NO_NEW_GRANTS) == NO_NEW_GRANTS
