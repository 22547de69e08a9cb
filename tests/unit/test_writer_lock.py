"""SQLite writers of every process queue on one file lock, not in SQLite's busy handler;
asyncio callers take it only when it is free.

Correctness never rests on the file lock (SQLite's own lock still keeps writes
one at a time); it only wakes the next writer the moment the last lets go. So
the tests check what it orders: a write waits while another process holds the
lock, starts as soon as it is let go, and a forked child has a lock of its own.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from headway.client.base import embedded_client, set_default_client
from headway.concurrency import asyncio as aio
from headway.core.limits import SlotGrant
from headway.settings import get_settings
from headway.store.db import CHECKPOINT_EVERY_COMMITS, Database, WouldWait
from helpers.waiting import wait_until


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


def test_without_waiting_a_held_lock_is_refused_before_anything_is_done(tmp_path: Path) -> None:
    db = _database(tmp_path)
    other = os.open(tmp_path / "headway.db-writer", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(WouldWait), db.without_waiting(), db.write() as tx:
            tx.execute("UPDATE t SET n = n + 1", {})
        assert _count(db) == 0
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    # Free: it runs; and only the first write is guarded (the second may wait).
    with db.without_waiting():
        for _ in range(2):
            with db.write() as tx:
                tx.execute("UPDATE t SET n = n + 1", {})
    assert _count(db) == 2
    db.close()


def test_attempt_here_runs_a_slot_call_at_once_or_not_at_all(tmp_path: Path) -> None:
    client = embedded_client(get_settings({"HEADWAY_HOME": str(tmp_path)}))
    try:
        client.create_limit("db", 1)
        ran, grant = client.attempt_here(lambda: client.acquire_slots(["db"], 1))
        assert ran and isinstance(grant, SlotGrant)
        other = os.open(tmp_path / "headway.db-writer", os.O_RDWR)
        fcntl.flock(other, fcntl.LOCK_EX)
        try:
            assert client.attempt_here(lambda: client.release_slots(grant.lease_id)) == (
                False,
                None,
            )
        finally:
            fcntl.flock(other, fcntl.LOCK_UN)
            os.close(other)
        assert client.read_limit("db").active_slots == 1  # nothing was done
        assert client.attempt_here(lambda: client.release_slots(grant.lease_id)) == (True, True)
    finally:
        client.close()


def test_asyncio_concurrency_never_blocks_the_loop_behind_another_writer(tmp_path: Path) -> None:
    # Another process holds the writers' lock for a while: the first attempt
    # goes to a thread, and the loop keeps running other coroutines meanwhile.
    settings = get_settings({"HEADWAY_HOME": str(tmp_path)})
    client = embedded_client(settings)
    client.create_limit("db", 1)
    other = os.open(tmp_path / "headway.db-writer", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)

    async def main() -> int:
        ticks = 0
        entered = asyncio.Event()

        async def body() -> None:
            async with aio.concurrency("db", occupy=1):
                entered.set()

        async def ticker() -> None:
            nonlocal ticks
            while not entered.is_set():
                ticks += 1
                if ticks == 20:
                    fcntl.flock(other, fcntl.LOCK_UN)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(asyncio.gather(body(), ticker()), 30)
        return ticks

    try:
        previous = set_default_client(client)
        try:
            assert asyncio.run(main()) >= 20
        finally:
            set_default_client(previous)
        assert client.read_limit("db").active_slots == 0
    finally:
        os.close(other)
        client.close()


def _wal_frames(shm: Path) -> tuple[int, int]:
    """(frames in the WAL, frames copied back into the database), from the -shm file.

    The wal-index header (SQLite's documented file format): ``mxFrame`` at byte
    16, and the checkpoint info's ``nBackfill`` at byte 96, in native order.
    """
    head = shm.read_bytes()[:100]
    frames = int.from_bytes(head[16:20], sys.byteorder)
    return frames, int.from_bytes(head[96:100], sys.byteorder)


def test_the_wal_is_checkpointed_beside_the_writers(tmp_path: Path) -> None:
    # SQLite's own checkpoint, inside a COMMIT (holding every other writer),
    # runs only past 10,000 pages of WAL; a thread of the store's makes them
    # beside the writers every few hundred commits.
    db = _database(tmp_path)  # one commit
    commits = 2 * CHECKPOINT_EVERY_COMMITS - 1  # the last one asks for a checkpoint
    for i in range(commits):
        with db.write() as tx:
            tx.execute("INSERT INTO t VALUES (:n)", {"n": i})

    def copied_back() -> bool:
        frames, backfilled = _wal_frames(tmp_path / "headway.db-shm")
        return frames > 0 and backfilled == frames

    wait_until(copied_back, "the WAL checkpointed")
    with db.read() as tx:
        assert tx.execute("SELECT COUNT(*) FROM t", {})[0][0] == commits + 1
    db.close()


def test_an_asyncio_block_that_raises_gives_its_slots_back_behind_another_writer(
    tmp_path: Path,
) -> None:
    # The block ends with an exception while another process writes: the
    # release cannot run on the loop, and must still be made (on a thread).
    client = embedded_client(get_settings({"HEADWAY_HOME": str(tmp_path)}))
    client.create_limit("db", 1)
    other = os.open(tmp_path / "headway.db-writer", os.O_RDWR)

    async def main() -> None:
        async with aio.concurrency("db", occupy=1):
            fcntl.flock(other, fcntl.LOCK_EX)
            threading.Timer(0.3, fcntl.flock, (other, fcntl.LOCK_UN)).start()
            raise ValueError("the block failed")

    previous = set_default_client(client)
    try:
        with pytest.raises(ValueError, match="the block failed"):
            asyncio.run(main())
        assert client.read_limit("db").active_slots == 0
    finally:
        set_default_client(previous)
        os.close(other)
        client.close()


CLOSED_MID_CHECKPOINT = """
import sys, threading
from headway.store.db import Database

for n in range(int(sys.argv[2])):
    db = Database(f"sqlite:///{sys.argv[1]}/s{n}.db")
    with db.write() as tx:
        tx.execute("CREATE TABLE t (n INTEGER NOT NULL)", {})
    db._checkpoint_soon()
    checkpointer = db._checkpointer
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            checkpointer.due.set()

    asker = threading.Thread(target=ask)
    asker.start()
    db.close()  # while checkpoints run, one after the other
    stop.set()
    asker.join()
print("closed", n + 1)
"""


def test_closing_a_store_while_its_wal_is_checkpointed(tmp_path: Path) -> None:
    # The checkpointer used its thread's connection, which close() closes from
    # another thread: a checkpoint running on it then crashed the process.
    done = subprocess.run(
        [sys.executable, "-c", CLOSED_MID_CHECKPOINT, str(tmp_path), "300"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "closed 300"
