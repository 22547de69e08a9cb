"""The PostgreSQL pool: a process holds at most HEADWAY_DATABASE_POOL_SIZE connections.

On a real PostgreSQL, counted in ``pg_stat_activity`` by the sessions' name
(``headway:<pid>``): nested transactions share one connection, a borrower
finding every connection busy waits and then gets one clear StoreUnavailable
(it never opens one more), the dedicated wake-up connection is the budget's
last one, and a forked child neither uses nor closes its parent's connections.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from headway.exceptions import StoreError, StoreUnavailable
from headway.store.db import Database
from headway.store.pgpool import application_name
from helpers.waiting import wait_until


@pytest.fixture
def pg_url(postgres_databases: Any) -> Iterator[str]:
    if isinstance(postgres_databases, str):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {postgres_databases}")
        pytest.skip(postgres_databases)
    url = postgres_databases.create()
    try:
        yield url
    finally:
        postgres_databases.drop(url)


def _sessions(url: str, name: str | None = None) -> int:
    """Sessions on ``url``'s database named ``name`` (default: this process's)."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    base, database = plain.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, name or application_name()),
        ).fetchone()
    assert row is not None
    return int(row[0])


class _Holder:
    """A thread holding one transaction open (so one pooled connection) until let go."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._inside = threading.Event()
        self._go = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._inside.wait(30), "the holder never got a connection"

    def _run(self) -> None:
        try:
            with self._db.read() as tx:
                tx.one("SELECT 1")
                self._inside.set()
                self._go.wait(60)
        except BaseException as exc:  # reported by the test
            self.error = exc
            self._inside.set()

    def release(self) -> None:
        self._go.set()
        self._thread.join(30)
        assert self.error is None, self.error


def test_nested_transactions_and_statements_share_the_one_connection(pg_url: str) -> None:
    # Size 2: one pooled connection. A nested borrow would wait for itself.
    db = Database(pg_url, busy_timeout=5.0, pool_size=2)
    try:
        with db.write() as tx:
            # A temporary table is seen by its own session only.
            tx.execute("CREATE TEMPORARY TABLE mine (x int) ON COMMIT DROP")
            tx.execute("INSERT INTO mine VALUES (1)")
            with db.read() as inner:
                assert inner.one("SELECT count(*) FROM mine") == (1,)
            assert db.execute_alone("SELECT count(*) FROM mine", {}) == [(1,)]
        assert _sessions(pg_url) == 1
    finally:
        db.close()


def test_a_borrower_waits_for_a_busy_pool_then_gets_one_clear_error(pg_url: str) -> None:
    db = Database(pg_url, busy_timeout=0.5, pool_size=3)  # two pooled connections
    try:
        holders = [_Holder(db), _Holder(db)]
        with pytest.raises(StoreUnavailable) as caught:
            db.execute_alone("SELECT 1", {})
        message = str(caught.value)
        assert "HEADWAY_DATABASE_POOL_SIZE=3" in message and "in use" in message
        with pytest.raises(StoreUnavailable):
            with db.write():
                pass
        # It waited; it never opened a third.
        assert _sessions(pg_url) == 2
        for holder in holders:
            holder.release()
        assert db.execute_alone("SELECT 1", {}) == [(1,)]
    finally:
        db.close()


def test_a_waiting_borrower_gets_the_connection_given_back(pg_url: str) -> None:
    db = Database(pg_url, busy_timeout=60.0, pool_size=2)
    try:
        holder = _Holder(db)
        result: dict[str, Any] = {}

        def borrow() -> None:
            result["rows"] = db.execute_alone("SELECT 7", {})

        waiter = threading.Thread(target=borrow, daemon=True)
        waiter.start()
        # Still waiting while the connection is held (it would have its answer otherwise).
        waiter.join(0.3)
        assert "rows" not in result
        holder.release()
        waiter.join(30)
        assert result["rows"] == [(7,)]
        assert _sessions(pg_url) == 1
    finally:
        db.close()


def test_the_dedicated_connection_is_the_last_of_the_budget(pg_url: str) -> None:
    db = Database(pg_url, busy_timeout=0.5, pool_size=2)
    try:
        holder = _Holder(db)
        with db.dedicated() as conn:
            conn.execute("LISTEN headway_test")
            assert _sessions(pg_url) == 2
            with pytest.raises(StoreError, match="dedicated"):
                with db.dedicated():
                    pass
            with pytest.raises(StoreUnavailable):
                db.execute_alone("SELECT 1", {})
            assert _sessions(pg_url) == 2
        holder.release()
        # Closed at the end of its block: room for the next listener.
        wait_until(lambda: _sessions(pg_url) == 1, "the dedicated connection closed")
        with db.dedicated() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()


def test_a_store_that_cannot_be_connected_to_says_why_at_once(pg_url: str) -> None:
    missing = pg_url.rsplit("/", 1)[0] + "/headway_no_such_database"
    # A long busy timeout: the answer must come from the first attempt, not the wait.
    db = Database(missing, busy_timeout=600.0, pool_size=4)
    with pytest.raises(StoreError, match="does not exist") as caught:
        with db.read():
            pass
    assert not isinstance(caught.value, StoreUnavailable)
    db.close()


def _child(url: str, out: Any) -> None:
    db = _FORKED["db"]
    try:
        out.put(db.execute_alone("SELECT 42", {}))
        db.close()
    except BaseException as exc:
        out.put(repr(exc))


_FORKED: dict[str, Database] = {}


def test_a_forked_child_uses_a_pool_of_its_own_and_leaves_its_parents_alone(
    pg_url: str,
) -> None:
    db = Database(pg_url, busy_timeout=30.0, pool_size=3)
    try:
        assert db.execute_alone("SELECT 1", {}) == [(1,)]
        _FORKED["db"] = db
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_child, args=(pg_url, out))
        child.start()
        assert out.get(timeout=60) == [(42,)]
        child.join(60)
        assert child.exitcode == 0
        # The child closed its own pool only: the parent's connection still serves.
        assert db.execute_alone("SELECT 2", {}) == [(2,)]
        with db.write() as tx:
            assert tx.one("SELECT 3") == (3,)
    finally:
        _FORKED.clear()
        db.close()
