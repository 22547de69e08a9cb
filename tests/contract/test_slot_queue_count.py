"""``limits.queued`` stays equal to the waiter rows of each limit, whatever happens to them.

PostgreSQL's one-statement acquire grants only when ``queued`` is 0, and its
one-statement release wakes waiters only when ``queued`` says there are any:
a count too low would let a newcomer pass the queue, or leave a waiter asleep
after a release. Every way a waiter row comes and goes is driven here, on
every backend, and after each step the count is compared with the rows.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import TYPE_CHECKING

from headway._process import current_process
from headway.client.base import Client
from headway.core.limits import ProcessInfo, SlotGrant, SlotWait
from headway.store.store import Store

if TYPE_CHECKING:
    from conftest import Backend


def _store(backend: Backend) -> tuple[Store, bool]:
    """The store behind ``backend`` (the server's own, or one opened on the same database)."""
    if backend.server is not None:
        return backend.server.app.state.store, False
    return Store.open(backend.settings), True


def _counts(store: Store) -> dict[str, tuple[int, int]]:
    """Per limit: (``queued``, waiter rows)."""
    with store.db.read() as tx:
        rows = tx.execute(
            "SELECT name, queued, (SELECT COUNT(*) FROM waiters w WHERE w.limit_name = limits.name)"
            " FROM limits"
        )
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _assert_in_step(store: Store, expected: dict[str, int]) -> None:
    counts = _counts(store)
    assert {name: rows for name, (_, rows) in counts.items()} == expected
    assert all(queued == rows for queued, rows in counts.values()), counts


def _wait(client: Client, names: list[str], slots: int, waiter: str, **kw: object) -> None:
    # One attempt under a named waiter id: queued, and left queued, when it cannot be granted.
    result = client.acquire_slots(names, slots, timeout=0, waiter_id=waiter, **kw)  # type: ignore[arg-type]
    assert isinstance(result, SlotWait), result


def test_queued_follows_every_waiter_row(backend: Backend, client: Client) -> None:
    store, own = _store(backend)
    try:
        client.create_limit("a", 1)
        client.create_limit("b", 2)
        held = client.acquire_slots(["a"], 1)
        assert isinstance(held, SlotGrant)
        _assert_in_step(store, {"a": 0, "b": 0})

        # Queued on one limit, then on two at once (rows on both, b itself has room).
        w1, w2 = uuid.uuid4().hex, uuid.uuid4().hex
        _wait(client, ["a"], 1, w1)
        _wait(client, ["a", "b"], 1, w2)
        _assert_in_step(store, {"a": 2, "b": 1})

        # A newcomer on b waits behind w2 although b has room (the fast path must see it).
        newcomer = client.acquire_slots(["b"], 1)
        assert isinstance(newcomer, SlotWait)
        _assert_in_step(store, {"a": 2, "b": 1})

        # Asking again keeps the place: no second row, no second count.
        _wait(client, ["a"], 1, w1)
        _assert_in_step(store, {"a": 2, "b": 1})

        # Cancelled: its row goes, and the count with it.
        client.cancel_slot_wait(w1)
        _assert_in_step(store, {"a": 1, "b": 1})

        # Released: the queued request is granted when it asks again; its rows go.
        assert held.lease_id is not None
        client.release_slots(held.lease_id)
        granted = client.acquire_slots(["a", "b"], 1, timeout=0, waiter_id=w2)
        assert isinstance(granted, SlotGrant)
        _assert_in_step(store, {"a": 0, "b": 0})

        # A waiter whose process has died is reaped by the sweeper, rows and count.
        me = current_process()
        ghost = ProcessInfo(
            pid=_dead_pid(), host=me.host, node=me.node, proc_start=max(me.proc_start, 1)
        )
        _wait(client, ["a"], 1, uuid.uuid4().hex, process=ghost)
        _assert_in_step(store, {"a": 1, "b": 0})
        client.sweep_slots()
        _assert_in_step(store, {"a": 0, "b": 0})
        assert granted.lease_id is not None
        client.release_slots(granted.lease_id)

        # Nothing drifted, so the sweeper's re-count finds nothing to fix.
        assert store.reaper.recount_queued() == []
    finally:
        if own:
            store.close()


def test_the_recount_repairs_a_count_that_drifted(backend: Backend, client: Client) -> None:
    store, own = _store(backend)
    try:
        client.create_limit("a", 1)
        held = client.acquire_slots(["a"], 1)
        assert isinstance(held, SlotGrant)
        _wait(client, ["a"], 1, uuid.uuid4().hex)
        with store.db.write() as tx:
            tx.execute("UPDATE limits SET queued = 0 WHERE name = 'a'")
        assert store.reaper.recount_queued() == ["a"]
        _assert_in_step(store, {"a": 1})
        assert store.reaper.recount_queued() == []
    finally:
        if own:
            store.close()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
