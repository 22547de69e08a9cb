"""SQLite writers of every process queue on one file lock, not in SQLite's busy handler.

Correctness never rests on the file lock (SQLite's own lock still keeps writes
one at a time); it only wakes the next writer the moment the last lets go. So
the tests check what it orders: a write waits while another process holds the
lock, starts as soon as it is let go, and a forked child has a lock of its own.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from headway.store.db import Database


def _database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'headway.db'}")
    with db.write() as tx:
        tx.execute("CREATE TABLE t (n INTEGER NOT NULL)", {})
        tx.execute("INSERT INTO t VALUES (0)", {})
    return db


def _count(db: Database) -> int:
    with db.read() as tx:
        return int(tx.execute("SELECT n FROM t", {})[0][0])


def test_a_write_waits_for_the_writer_lock_and_goes_when_it_is_let_go(tmp_path: Path) -> None:
    db = _database(tmp_path)
    lock_path = tmp_path / "headway.db-writer"
    assert lock_path.exists()
    # Another process's writer: an open file of its own holding the lock.
    other = os.open(lock_path, os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    done = threading.Event()

    def write() -> None:
        with db.write() as tx:
            tx.execute("UPDATE t SET n = n + 1", {})
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # Nothing else holds SQLite's lock: only the file lock can hold it back.
        assert not done.wait(0.3)
        assert _count(db) == 0  # reads never wait for it
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    writer.join(10)
    assert done.is_set() and _count(db) == 1
    # Let go after the transaction: another process can take it at once.
    probe = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    db.close()


def test_a_failed_transaction_lets_the_lock_go(tmp_path: Path) -> None:
    db = _database(tmp_path)
    try:
        with db.write() as tx:
            tx.execute("UPDATE t SET n = n + 1", {})
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    probe = os.open(tmp_path / "headway.db-writer", os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    assert _count(db) == 0
    db.close()
