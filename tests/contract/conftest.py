"""The backend fixture: every contract test runs on each store and transport.

A test that takes ``client`` (or ``backend``) runs four times:

- ``embedded-sqlite``: the Orchestrator (the embedded client) on SQLite under the
  test's HEADWAY_HOME;
- ``server-sqlite``: HttpClient to a real server (uvicorn on a loopback port, in a
  thread of the test process) on that SQLite file, with an API key required;
- ``embedded-postgres``: the Orchestrator on a fresh PostgreSQL database;
- ``server-postgres``: HttpClient to a real server on a fresh PostgreSQL database.

``client`` is also the process's default client (what the SDK and the
concurrency API use), and the environment (HEADWAY_API_URL, HEADWAY_API_KEY or
HEADWAY_DATABASE_URL, HEADWAY_HOME) is set so that subprocesses and the CLI
reach the same store. PostgreSQL cases need a server at 127.0.0.1:5432 (user
postgres, database test; or HEADWAY_TEST_POSTGRES_URL): without one they skip,
and with ``CI=true`` they fail. ``HEADWAY_TEST_BACKENDS=embedded-sqlite,...``
narrows the set for a quick local run.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from headway.client.base import Client, set_default_client
from headway.core.clock import MovableClock
from headway.settings import Settings, get_settings

ALL_BACKENDS = ("embedded-sqlite", "server-sqlite", "embedded-postgres", "server-postgres")
ADMIN_URL = os.environ.get("HEADWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _selected_backends() -> tuple[str, ...]:
    raw = os.environ.get("HEADWAY_TEST_BACKENDS", "")
    chosen = tuple(b.strip() for b in raw.split(",") if b.strip())
    unknown = set(chosen) - set(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(f"HEADWAY_TEST_BACKENDS: unknown backend(s) {sorted(unknown)}")
    return chosen or ALL_BACKENDS


@dataclass
class Backend:
    """One store and transport under test."""

    name: str
    settings: Settings
    client: Client
    #: Variables a subprocess needs to reach the same store (already in os.environ).
    env: dict[str, str] = field(default_factory=dict)
    database_url: str | None = None
    api_url: str | None = None
    #: The in-process server (server backends only).
    server: Any = None
    #: The time the store (the server's, or the embedded one) measures expiries on:
    #: a test of expiry moves it forward instead of waiting on the wall clock.
    clock: MovableClock = field(default_factory=MovableClock)

    @property
    def is_server(self) -> bool:
        """True when calls go over HTTP."""
        return self.name.startswith("server")

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL."""
        return self.name.endswith("postgres")

    def new_client(self) -> Client:
        """Another client of the same kind on the same store (a second 'process')."""
        from headway.client.base import _make_client

        return _make_client(self.settings, self.clock)


class PostgresDatabases:
    """Migrated databases for the tests, each used by one test at a time.

    The first ones are copied from one migrated template. A test's database is
    then recycled rather than dropped: renamed (so a process of the finished
    test that still holds its URL cannot reach it any more), emptied of every
    row (its sequences restarted) and handed to a later test. Creating a database writes the whole
    template (its catalogs too) through the WAL, and on a loaded machine that
    cost a third of a second per test; the rename and the DELETEs cost a few
    milliseconds. A database that cannot be recycled cleanly is dropped.
    """

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self._admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
        self.template: str | None = None
        self._base = admin_url.rsplit("/", 1)[0]
        self._tables: list[str] = []
        self._revision: str | None = None
        self._clean: list[str] = []

    def url(self, name: str) -> str:
        """The SQLAlchemy-style URL of database ``name``."""
        return self._base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name

    def _ensure_template(self) -> str:
        if self.template is None:
            from headway.store.db import Database
            from headway.store.migrate import ensure_schema

            name = f"headway_tpl_{secrets.token_hex(6)}"
            self._admin.execute(f'CREATE DATABASE "{name}"')
            db = Database(self.url(name))
            try:
                ensure_schema(db)
            finally:
                db.close()
            self._tables, self._revision = self._shape(name)
            self.template = name
        return self.template

    def _shape(self, name: str) -> tuple[list[str], str | None]:
        import psycopg

        with psycopg.connect(f"{self._base}/{name}", autocommit=True) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
                )
            ]
            revision = None
            if "alembic_version" in tables:
                found = conn.execute("SELECT version_num FROM alembic_version").fetchall()
                revision = found[0][0] if len(found) == 1 else None
        return tables, revision

    def create(self) -> str:
        """A migrated database holding no rows; its URL."""
        if self._clean:
            return self.url(self._clean.pop())
        name = f"headway_test_{secrets.token_hex(6)}"
        template = self._ensure_template()
        # WAL_LOG copies the small template through the WAL; FILE_COPY forces a
        # checkpoint for each database, and the suite's workers queued on them.
        self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY WAL_LOG')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Be done with a database made by :meth:`create`: recycle it, or drop it."""
        name = url.rsplit("/", 1)[1]
        fresh = f"headway_test_{secrets.token_hex(6)}"
        if self._rename(name, fresh):
            if self._empty(fresh):
                self._clean.append(fresh)
                return
            name = fresh
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _rename(self, name: str, fresh: str) -> bool:
        import psycopg

        for _ in range(50):
            # Sessions of the test still open (a server's pool, a child process):
            # ended here; a rename needs the database to have none.
            self._admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            try:
                self._admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{fresh}"')
                return True
            except psycopg.errors.ObjectInUse:
                time.sleep(0.02)  # a terminated session is still on its way out
            except psycopg.Error:
                return False
        return False

    def _empty(self, name: str) -> bool:
        import psycopg

        try:
            if self._shape(name) != (self._tables, self._revision):
                return False  # the test changed the schema: not reused
            data = [t for t in self._tables if t != "alembic_version"]
            with psycopg.connect(f"{self._base}/{name}") as conn, conn.transaction():
                # DELETE, not TRUNCATE: the tables are small, and TRUNCATE makes
                # and syncs new files for each (~0.1 s in all, against ~5 ms).
                # Foreign keys are not checked meanwhile (every table is emptied).
                conn.execute("SET LOCAL session_replication_role = replica")
                for table in data:
                    conn.execute(f'DELETE FROM "{table}"')
                for (sequence,) in conn.execute(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
                ).fetchall():
                    conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
            return True
        except psycopg.Error:
            return False

    def close(self) -> None:
        """Drop the template and every database kept for reuse; disconnect."""
        for name in [*self._clean, *([self.template] if self.template else [])]:
            self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.close()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | str]:
    """The PostgreSQL database factory, or the reason there is none."""
    try:
        factory = PostgresDatabases(ADMIN_URL)
    except Exception as exc:
        yield f"no PostgreSQL at {ADMIN_URL}: {exc}"
        return
    try:
        yield factory
    finally:
        factory.close()


def _postgres(databases: PostgresDatabases | str) -> PostgresDatabases:
    if isinstance(databases, str):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {databases}")
        pytest.skip(databases)
    return databases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``backend`` (and so ``client``) over the selected backends."""
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", _selected_backends())
    if "server_backend_name" in metafunc.fixturenames:
        names = [n for n in _selected_backends() if n.startswith("server")]
        metafunc.parametrize("server_backend_name", names)


@pytest.fixture
def server_settings() -> dict[str, str]:
    """Extra ``HEADWAY_*`` variables of the in-process server (override in a test module)."""
    return {}


@pytest.fixture
def backend(
    backend_name: str,
    postgres_databases: PostgresDatabases | str,
    headway_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_settings: dict[str, str],
) -> Iterator[Backend]:
    """The store and transport of this test case, with its environment set."""
    yield from _backend(
        backend_name, postgres_databases, headway_home, monkeypatch, server_settings
    )


@pytest.fixture
def server_backend(
    server_backend_name: str,
    postgres_databases: PostgresDatabases | str,
    headway_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_settings: dict[str, str],
) -> Iterator[Backend]:
    """Like ``backend``, over the server backends only (tests of the HTTP layer itself)."""
    yield from _backend(
        server_backend_name, postgres_databases, headway_home, monkeypatch, server_settings
    )


def _backend(
    backend_name: str,
    postgres_databases: PostgresDatabases | str,
    headway_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_settings: dict[str, str],
) -> Iterator[Backend]:
    env: dict[str, str] = {"HEADWAY_HOME": str(headway_home)}
    database_url = None
    databases: PostgresDatabases | None = None
    if backend_name.endswith("postgres"):
        databases = _postgres(postgres_databases)
        database_url = databases.create()
        env["HEADWAY_DATABASE_URL"] = database_url
    server: Any = None
    clock = MovableClock()
    try:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        if backend_name.startswith("server"):
            from headway.server.runner import ServerThread

            api_key = secrets.token_urlsafe(16)
            server_env = {**os.environ, "HEADWAY_API_KEY": api_key, **server_settings}
            server = ServerThread(get_settings(server_env), clock=clock).start()
            # The client side: only the URL and the key; the store is the server's.
            monkeypatch.delenv("HEADWAY_DATABASE_URL", raising=False)
            env.pop("HEADWAY_DATABASE_URL", None)
            env.update({"HEADWAY_API_URL": server.url, "HEADWAY_API_KEY": api_key})
            monkeypatch.setenv("HEADWAY_API_URL", server.url)
            monkeypatch.setenv("HEADWAY_API_KEY", api_key)
        settings = get_settings()
        from headway.client.base import _make_client

        client = _make_client(settings, clock)
        yield Backend(
            name=backend_name,
            settings=settings,
            client=client,
            env=env,
            database_url=database_url,
            api_url=server.url if server is not None else None,
            server=server,
            clock=clock,
        )
        client.close()
    finally:
        if server is not None:
            server.stop()
        if databases is not None and database_url is not None:
            databases.drop(database_url)


@pytest.fixture
def client(backend: Backend) -> Iterator[Client]:
    """The backend's client, also installed as the process's default client."""
    set_default_client(backend.client)
    yield backend.client


def new_id() -> str:
    """A fresh run id."""
    return str(uuid.uuid4())
