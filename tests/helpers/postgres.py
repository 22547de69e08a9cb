"""PostgreSQL for tests that make their own databases, outside the backend fixture.

Skips without a PostgreSQL at :data:`ADMIN_URL` (fails in CI, where one is required).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ADMIN_URL = os.environ.get("HEADWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def admin_connection() -> Any:
    """An autocommit psycopg connection to :data:`ADMIN_URL`; skips the test without one."""
    try:
        import psycopg

        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}: {exc}")


def headway_url(url: str) -> str:
    """A libpq ``postgresql://`` URL as headway takes it (``postgresql+psycopg://``)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def fresh_postgres(*, for_headway: bool = True) -> Iterator[str]:
    """The URL of a new empty database, dropped afterwards.

    ``postgresql+psycopg://`` as headway takes it, or with ``for_headway=False``
    the plain ``postgresql://`` URL psycopg connects to.
    """
    admin = admin_connection()
    name = f"headway_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        yield headway_url(url) if for_headway else url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
