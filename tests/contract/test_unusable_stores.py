"""A damaged store, or another application's database, is one line and exit 2: never a
traceback, and nothing is written into a database that is not headway's."""

from __future__ import annotations

import hashlib
import random
import secrets
import sqlite3
from pathlib import Path

import pytest

from conftest import PostgresDatabases, _postgres
from headway.cli import main
from headway.core.states import Running
from headway.settings import get_settings
from headway.store.store import Store

COMMANDS = (("flow-run", "ls"), ("status",), ("concurrency-limit", "ls"), ("deployment", "ls"))


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_applications_sqlite_file_is_refused_untouched(
    headway_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = headway_home.parent / "elsewhere"
    folder.mkdir()
    path = folder / "crm.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.close()
    before = _digest(path)
    monkeypatch.setenv("HEADWAY_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("HEADWAY_SERVER_HOST", "127.0.0.1")  # server start sets it
    for args in (*COMMANDS, ("db", "upgrade"), ("server", "start", "--port", "0")):
        code, err = _cli(capsys, *args)
        assert code == 2, (args, err)
        assert err.startswith("Error: the database at") and "is not headway's" in err, err
        assert len(err.strip().splitlines()) == 1
    assert _digest(path) == before
    assert sorted(p.name for p in folder.iterdir()) == ["crm.db"]


def _garble_data_pages(path: Path) -> None:
    """Random bytes over every page but the schema's: the header and table list stay intact."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        try:
            keep = {
                r[0] for r in conn.execute("SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'")
            }
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table to find the schema's pages")
    conn.close()
    data = bytearray(path.read_bytes())
    noise = random.Random(7)
    for page in range(1, len(data) // page_size + 1):
        if page not in keep:
            start = (page - 1) * page_size
            data[start : start + page_size] = noise.randbytes(page_size)
    path.write_bytes(bytes(data))


def test_a_damaged_sqlite_store_is_one_line_exit_2(
    headway_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(get_settings())
    for i in range(50):
        store.runs.create_flow_run(id=f"run-{i}", name=f"r{i}", flow_name="f", state=Running())
    store.close()
    _garble_data_pages(headway_home / "headway.db")
    for args in COMMANDS:
        code, err = _cli(capsys, *args)
        assert code == 2, (args, err)
        assert err.startswith("Error: the store at") and "is damaged" in err, err
        assert len(err.strip().splitlines()) == 1


def test_another_applications_postgres_database_is_refused_untouched(
    postgres_databases: PostgresDatabases | str,
    headway_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    databases = _postgres(postgres_databases)
    name = f"headway_foreign_{secrets.token_hex(6)}"
    databases._admin.execute(f'CREATE DATABASE "{name}"')
    url = databases.url(name)
    try:
        import psycopg

        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")
        monkeypatch.setenv("HEADWAY_DATABASE_URL", url)
        for args in (("flow-run", "ls"), ("db", "upgrade")):
            code, err = _cli(capsys, *args)
            assert code == 2, (args, err)
            assert "is not headway's" in err and len(err.strip().splitlines()) == 1
        with psycopg.connect(conninfo, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        assert tables == [("customers",)]
    finally:
        databases.drop(url)
