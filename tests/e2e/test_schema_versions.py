"""An older headway meets a store a newer one upgraded: it refuses at once, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.exceptions import StoreTooNew
from headway.server.runner import free_port
from headway.store.db import Database
from headway.store.migrate import current_revision, ensure_schema
from headway.store.migrations import HEAD, KNOWN
from helpers.postgres import fresh_postgres

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]
NEWER = f"{int(HEAD) + 1:04d}"


def headway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(params=["sqlite", "postgres"])
def newer_store(request: pytest.FixtureRequest, headway_home: Path) -> Iterator[dict[str, str]]:
    """The environment of a store whose schema a newer headway upgraded to NEWER."""
    env = {**os.environ, "HEADWAY_HOME": str(headway_home)}
    if request.param == "sqlite":
        yield _upgraded_by_a_newer_headway(env)
        return
    with fresh_postgres() as url:
        env["HEADWAY_DATABASE_URL"] = url
        yield _upgraded_by_a_newer_headway(env)


def _upgraded_by_a_newer_headway(env: dict[str, str]) -> dict[str, str]:
    url = env.get("HEADWAY_DATABASE_URL") or f"sqlite:///{Path(env['HEADWAY_HOME']) / 'headway.db'}"
    Path(env["HEADWAY_HOME"]).mkdir(parents=True, exist_ok=True)
    db = Database(url)
    try:
        ensure_schema(db)
        with db.write() as tx:
            tx.execute("UPDATE alembic_version SET version_num = :v", {"v": NEWER})
        assert current_revision(db) == NEWER
    finally:
        db.close()
    return env


def test_known_revisions_are_the_whole_history() -> None:
    from alembic.script import ScriptDirectory

    from headway.store import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite:///unused.db"))
    assert sorted(rev.revision for rev in script.walk_revisions()) == list(KNOWN)


def test_opening_a_newer_store_is_refused(newer_store: dict[str, str]) -> None:
    url = newer_store.get("HEADWAY_DATABASE_URL") or (
        f"sqlite:///{Path(newer_store['HEADWAY_HOME']) / 'headway.db'}"
    )
    db = Database(url)
    try:
        with pytest.raises(StoreTooNew) as caught:
            ensure_schema(db)
        # Nothing was migrated down or over.
        assert current_revision(db) == NEWER
    finally:
        db.close()
    assert (
        str(caught.value)
        == f"this store was upgraded to {NEWER} by a newer headway; upgrade headway"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("flow-run", "ls"),
        ("db", "upgrade"),
        ("server", "start", "--port", "0"),
    ],
    ids=["client", "db-upgrade", "server"],
)
def test_cli_and_server_refuse_a_newer_store_in_one_line(
    newer_store: dict[str, str], args: tuple[str, ...]
) -> None:
    if args[0] == "server":
        args = ("server", "start", "--port", str(free_port()))
    result = headway(newer_store, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"Error: this store was upgraded to {NEWER} by a newer headway; upgrade headway"
    ]


def test_a_deployment_made_before_code_sources_keeps_its_entrypoint(tmp_path: Path) -> None:
    from headway.settings import get_settings
    from headway.store import migrate
    from headway.store.store import Store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0006")
    db = Database(url)
    try:
        with db.write() as tx:
            tx.execute(
                "INSERT INTO deployments (id, full_name, flow_name, name, entrypoint, created,"
                " updated) VALUES ('d1', 'etl/old', 'etl', 'old', '/home/me/proj/flows/etl.py:etl',"
                " 0, 0)"
            )
        assert ensure_schema(db) is True
    finally:
        db.close()
    store = Store.open(get_settings({"HEADWAY_DATABASE_URL": url}))
    try:
        dep = store.deployments.read_deployment("etl/old")
    finally:
        store.close()
    assert dep.entrypoint == "/home/me/proj/flows/etl.py:etl"
    assert (dep.code_repository, dep.code_ref) == (None, None)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_records_made_before_0009_get_ids_and_update_times(tmp_path: Path, backend: str) -> None:
    """Migration 0009: limits and work pools made before it get a stable id each,
    unique; pools, queues and flow runs get ``updated`` (their creation, or a run's
    last state change when later); the store reads them back."""
    if backend == "postgres":
        with fresh_postgres() as url:
            _check_0009(url)
    else:
        _check_0009(f"sqlite:///{tmp_path / 'old.db'}")


def _check_0009(url: str) -> None:
    from headway.settings import get_settings
    from headway.store import migrate
    from headway.store.store import Store

    migrate.upgrade(url, "0008")
    db = Database(url)
    try:
        with db.write() as tx:
            for name in ("db", "tag:io", "pool:p"):
                tx.execute(
                    "INSERT INTO limits (name, slot_limit, active, active_slots,"
                    " slot_decay_per_second, decayed_at, created, updated)"
                    " VALUES (:n, 2, :t, 0, 0, 100, 100, 150)",
                    {"n": name, "t": True},
                )
            tx.execute(
                "INSERT INTO work_pools (name, type, paused, description, created)"
                " VALUES ('p', 'process', :f, '', 200)",
                {"f": False},
            )
            tx.execute(
                "INSERT INTO work_queues (id, pool, name, priority, paused, created)"
                " VALUES ('q1', 'p', 'default', 0, :f, 210)",
                {"f": False},
            )
            for run_id, state_at in (("r-new", 300.0), ("r-moved", 400.0)):
                tx.execute(
                    "INSERT INTO flow_runs (id, name, flow_name, state_type, state_name,"
                    " state_timestamp, created) VALUES (:id, 'r', 'f', 'SCHEDULED', 'Scheduled',"
                    " :ts, 300)",
                    {"id": run_id, "ts": state_at},
                )
        assert ensure_schema(db) is True
    finally:
        db.close()
    store = Store.open(get_settings({"HEADWAY_DATABASE_URL": url}))
    try:
        limits = store.limits.list_limits()
        pool = store.pools.read_work_pool("p")
        runs = {r.id: r for r in store.runs.list_flow_runs()}
    finally:
        store.close()
    ids = [lim.id for lim in limits]
    assert all(i is not None and len(i) == 36 for i in ids) and len(set(ids)) == 3
    assert [lim.updated.timestamp() for lim in limits if lim.updated] == [150.0] * 3
    assert pool.id is not None and len(pool.id) == 36
    assert pool.updated == pool.created
    assert pool.queues[0].updated == pool.queues[0].created
    assert runs["r-new"].updated == runs["r-new"].created
    updated = runs["r-moved"].updated
    assert updated is not None and updated.timestamp() == 400.0
