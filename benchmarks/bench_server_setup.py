"""Shared set-up of the server benchmarks: a store (SQLite or PostgreSQL) and servers.

Not a benchmark itself. ``store(kind)`` makes a temporary HEADWAY_HOME and, for
PostgreSQL, a fresh database (on $HEADWAY_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test) that is dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

ADMIN_URL = os.environ.get("HEADWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def store(kind: str) -> Iterator[dict[str, str]]:
    """The environment of a fresh store of ``kind`` (``sqlite`` or ``postgres``)."""
    with tempfile.TemporaryDirectory(prefix="headway-bench-") as home:
        env = {
            **os.environ,
            "HEADWAY_HOME": home,
            "HEADWAY_LOGGING_LEVEL": "WARNING",
        }
        for var in ("HEADWAY_API_URL", "HEADWAY_DATABASE_URL", "HEADWAY_API_KEY"):
            env.pop(var, None)
        if kind == "sqlite":
            yield env
            return
        if kind != "postgres":
            raise SystemExit(f"unknown store {kind!r}: sqlite or postgres")
        import psycopg

        name = f"headway_bench_{secrets.token_hex(6)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            env["HEADWAY_DATABASE_URL"] = f"{base}/{name}"
            try:
                yield env
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
