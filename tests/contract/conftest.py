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
    """Fresh databases copied from one migrated template, dropped after each test."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        self.admin_url = admin_url
        self._admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
        self.template: str | None = None
        self._base = admin_url.rsplit("/", 1)[0]

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
            self.template = name
        return self.template

    def create(self) -> str:
        """A new, migrated database; its URL."""
        name = f"headway_test_{secrets.token_hex(6)}"
        template = self._ensure_template()
        self._admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database made by :meth:`create`, closing whatever still uses it."""
        name = url.rsplit("/", 1)[1]
        self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template and disconnect."""
        if self.template is not None:
            self._admin.execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
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
