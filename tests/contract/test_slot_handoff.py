"""Direct handoff: whoever frees slots grants them to the head of the queue, in its transaction.

A release (a cancel, a limit raised, a reap) creates the head waiter's lease
before it commits; the waiter then only takes the grant by its id. Each test
queues waiters with one attempt under a named waiter id (``timeout=0``), so
nothing runs on their behalf until the test asks again: what the store did on
its own is what ``inspect_limit`` shows in between. Runs on every backend.
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from headway._process import current_process
from headway.client.base import Client
from headway.concurrency.sync import concurrency
from headway.core.limits import ProcessInfo, SlotGrant, SlotWait, WakeTarget
from headway.orchestrator import Orchestrator

if TYPE_CHECKING:
    from conftest import Backend


def _orchestrator(backend: Backend) -> Orchestrator:
    if backend.server is not None:
        orch: Orchestrator = backend.server.app.state.orchestrator
        return orch
    assert isinstance(backend.client, Orchestrator)  # the embedded client
    return backend.client


@pytest.fixture
def woken(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The waiter ids the slot engine notifies, in order (whoever sends them)."""
    orch = _orchestrator(backend)
    seen: list[str] = []
    original = orch._notify

    def spy(targets: Sequence[WakeTarget]) -> None:
        seen.extend(t.waiter_id for t in targets)
        original(targets)

    monkeypatch.setattr(orch, "_notify", spy)
    yield seen


def _queue(client: Client, names: list[str], slots: int = 1, **kw: Any) -> str:
    """One attempt under a new waiter id, which must queue; the id."""
    waiter = uuid.uuid4().hex
    result = client.acquire_slots(names, slots, timeout=0, waiter_id=waiter, **kw)
    assert isinstance(result, SlotWait), result
    return waiter


def _take(client: Client, names: list[str], waiter: str, slots: int = 1) -> SlotGrant:
    """The waiter comes back: it finds the grant made for it."""
    result = client.acquire_slots(names, slots, timeout=0, waiter_id=waiter)
    assert isinstance(result, SlotGrant), result
    return result


def _holders(client: Client, name: str) -> list[str | None]:
    return [lease.holder.id for lease in client.inspect_limit(name).holders]


def _waiting(client: Client, name: str) -> list[str | None]:
    return [w.holder.id for w in client.inspect_limit(name).waiters]


def _grant(client: Client, names: list[str], slots: int = 1, **kw: Any) -> SlotGrant:
    result = client.acquire_slots(names, slots, **kw)
    assert isinstance(result, SlotGrant), result
    return result


def test_a_release_hands_the_slot_to_the_head_waiter(
    backend: Backend, client: Client, woken: list[str]
) -> None:
    client.create_limit("h", 1)
    holder = _grant(client, ["h"], holder_id="first")
    w1 = _queue(client, ["h"], holder_id="w1", lease_seconds=60)
    backend.clock.advance(3)  # w1 waits 3 s (store time) before the release
    w2 = _queue(client, ["h"], holder_id="w2")
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)

    # Before w1 runs again, the release has already made w1 the holder.
    detail = client.inspect_limit("h")
    assert [lease.holder.id for lease in detail.holders] == ["w1"]
    assert [w.holder.id for w in detail.waiters] == ["w2"]
    assert detail.limit.active_slots == 1
    assert woken == [w1]  # only the granted waiter is woken, not w2

    backend.clock.advance(3)  # w1 comes for its grant 3 s later
    grant = _take(client, ["h"], w1)
    assert grant.lease_id == detail.holders[0].id
    # Its wait ran from its queueing to the release that granted it, not to this take.
    assert 3.0 <= grant.waited_seconds < 6.0
    assert grant.lease_seconds == 60
    # The lease is w1's like any other: renewed, then released on to w2.
    assert client.renew_leases([grant.lease_id]) == []
    client.release_slots(grant.lease_id)
    assert _holders(client, "h") == ["w2"]
    assert woken == [w1, w2]
    last = _take(client, ["h"], w2)
    assert last.lease_id is not None
    client.release_slots(last.lease_id)
    assert client.read_limit("h").active_slots == 0
    assert woken == [w1, w2]  # nobody left to wake


def test_only_granted_waiters_are_woken(client: Client, woken: list[str]) -> None:
    client.create_limit("w", 2)
    held = [_grant(client, ["w"]) for _ in range(2)]
    big = _queue(client, ["w"], 2, holder_id="big")
    small = [_queue(client, ["w"], holder_id=f"s{i}") for i in range(3)]
    assert held[0].lease_id is not None and held[1].lease_id is not None

    # One slot free: the 2-slot head does not fit, and nobody passes it.
    client.release_slots(held[0].lease_id)
    assert woken == []
    assert _holders(client, "w") == [None]
    assert _waiting(client, "w") == ["big", "s0", "s1", "s2"]

    # Two free: the head takes both; the small ones still do not fit, and sleep on.
    client.release_slots(held[1].lease_id)
    assert woken == [big]
    assert _holders(client, "w") == ["big"]
    lease = _take(client, ["w"], big, 2).lease_id
    assert lease is not None

    # Its release grants the next two in order; the third is not woken.
    client.release_slots(lease)
    assert woken == [big, small[0], small[1]]
    assert sorted(_holders(client, "w"), key=str) == ["s0", "s1"]
    assert _waiting(client, "w") == ["s2"]

    # A waiter cancelling before it took its grant gives the slot on, to s2 only.
    client.cancel_slot_wait(small[0])
    assert woken == [big, small[0], small[1], small[2]]
    assert sorted(_holders(client, "w"), key=str) == ["s1", "s2"]
    assert _waiting(client, "w") == []


def test_a_waiter_whose_wake_up_was_lost_finds_its_grant(
    backend: Backend, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grant does not depend on the notification: the waiter's own look finds it."""
    client.create_limit("m", 1)
    holder = _grant(client, ["m"])
    # Every wake-up sent after a commit is dropped (on PostgreSQL the NOTIFY sent
    # inside the transaction still arrives: nothing to lose there).
    monkeypatch.setattr(_orchestrator(backend), "_notify", lambda targets: None)
    got: list[SlotGrant | SlotWait] = []
    waiter = threading.Thread(
        target=lambda: got.append(client.acquire_slots(["m"], 1, timeout=120, holder_id="late"))
    )
    waiter.start()
    queued = threading.Event()
    for _ in range(600):
        if _waiting(client, "m") == ["late"]:
            queued.set()
            break
        queued.wait(0.05)
    assert queued.is_set()
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    assert _holders(client, "m") == ["late"]
    waiter.join(150)
    (grant,) = got
    assert isinstance(grant, SlotGrant)
    assert [lease.id for lease in client.inspect_limit("m").holders] == [grant.lease_id]
    assert grant.lease_id is not None
    client.release_slots(grant.lease_id)


def test_handoff_keeps_priority_and_fifo_order(client: Client) -> None:
    client.create_limit("o", 1)
    holder = _grant(client, ["o"])
    order = [("a", 0), ("b", 0), ("c", 5), ("d", 0), ("e", 5)]
    waiters = {hid: _queue(client, ["o"], holder_id=hid, priority=p) for hid, p in order}
    served: list[str | None] = []
    lease = holder.lease_id
    for _ in order:
        assert lease is not None
        client.release_slots(lease)
        (hid,) = _holders(client, "o")
        assert hid is not None
        served.append(hid)
        lease = _take(client, ["o"], waiters[hid]).lease_id
    assert lease is not None
    client.release_slots(lease)
    assert served == ["c", "e", "a", "b", "d"]
    assert client.read_limit("o").active_slots == 0


def test_several_names_are_handed_off_all_or_nothing(client: Client, woken: list[str]) -> None:
    client.create_limit("a", 1)
    client.create_limit("b", 1)
    on_a = _grant(client, ["a"])
    on_b = _grant(client, ["b"])
    both = _queue(client, ["a", "b"], holder_id="both")
    behind = _queue(client, ["a"], holder_id="behind")
    assert on_a.lease_id is not None and on_b.lease_id is not None

    client.release_slots(on_a.lease_id)
    # a is free but its head waits for b too: nothing is taken, nobody passes it.
    assert woken == []
    assert _holders(client, "a") == []
    assert _waiting(client, "a") == ["both", "behind"]

    client.release_slots(on_b.lease_id)
    assert woken == [both]
    assert _holders(client, "a") == ["both"] and _holders(client, "b") == ["both"]
    grant = _take(client, ["a", "b"], both)
    assert grant.names == ("a", "b")
    assert grant.lease_id is not None
    client.release_slots(grant.lease_id)
    assert woken == [both, behind]
    assert _holders(client, "a") == ["behind"] and _holders(client, "b") == []


def test_raising_a_limit_hands_off_and_rate_tokens_too(client: Client, woken: list[str]) -> None:
    client.create_limit("r", 2, slot_decay_per_second=0.001)
    first = client.acquire_slots(["r"], 2, mode="rate")
    assert isinstance(first, SlotGrant)
    tokens = _queue(client, ["r"], mode="rate", holder_id="tokens")
    client.update_limit("r", limit=3)
    assert woken == [tokens]
    detail = client.inspect_limit("r")
    assert detail.waiters == () and detail.limit.active_slots == pytest.approx(3, abs=0.01)
    grant = _take(client, ["r"], tokens)
    assert grant.mode == "rate" and grant.lease_id is None and grant.names == ("r",)


def test_disabling_a_limit_hands_its_waiters_through(client: Client, woken: list[str]) -> None:
    client.create_limit("d", 1)
    _grant(client, ["d"])
    waiter = _queue(client, ["d"], holder_id="late")
    client.update_limit("d", active=False)
    assert woken == [waiter]
    grant = _take(client, ["d"], waiter)
    assert grant.lease_id is None and grant.inactive == ("d",)


def test_a_waiter_handed_a_slot_never_holds_two(client: Client) -> None:
    """Room beyond the grant does not give the waiter a second lease when it comes back.

    On PostgreSQL the waiter's next attempt goes through the one-statement grant
    first (the limit now has room and nobody queued): it must see the grant
    handed to it and leave the request to take that one.
    """
    client.create_limit("two", 1)
    holder = _grant(client, ["two"])
    waiter = _queue(client, ["two"], holder_id="w")
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    client.update_limit("two", limit=2)
    grant = _take(client, ["two"], waiter)
    detail = client.inspect_limit("two")
    assert [lease.id for lease in detail.holders] == [grant.lease_id]
    assert detail.limit.active_slots == 1
    assert grant.lease_id is not None
    client.release_slots(grant.lease_id)
    assert client.read_limit("two").active_slots == 0


def test_deleting_a_limit_hands_its_waiters_an_unlimited_grant(
    client: Client, woken: list[str]
) -> None:
    client.create_limit("gone", 1)
    client.create_limit("kept", 1)
    _grant(client, ["gone"])
    alone = _queue(client, ["gone"], holder_id="alone")
    _grant(client, ["kept"])
    also = _queue(client, ["gone", "kept"], holder_id="also")
    client.delete_limit("gone", force=True)
    # The first asked for that limit only: it goes through, holding nothing. The
    # second still waits on 'kept' (woken to retry there), in its place.
    assert sorted(woken) == sorted([alone, also])
    grant = _take(client, ["gone"], alone)
    assert grant.lease_id is None and grant.unknown == ("gone",)
    again = client.acquire_slots(["gone", "kept"], 1, timeout=0, waiter_id=also)
    assert isinstance(again, SlotWait)
    assert _waiting(client, "kept") == ["also"]


def test_a_granted_waiter_that_never_came_back_has_its_lease_expire(
    backend: Backend, client: Client
) -> None:
    client.create_limit("x", 1)
    holder = _grant(client, ["x"])
    _queue(client, ["x"], holder_id="vanished", lease_seconds=30)
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    (lease,) = client.inspect_limit("x").holders
    assert lease.holder.id == "vanished"

    backend.clock.advance(31)
    detail = client.inspect_limit("x")  # sweeps: the lease expired unrenewed
    assert detail.holders == () and detail.limit.active_slots == 0
    assert client.renew_leases([lease.id]) == [lease.id]
    assert isinstance(client.acquire_slots(["x"], 1), SlotGrant)


def test_a_waiter_back_after_its_grant_expired_queues_again_under_its_id(
    backend: Backend, client: Client
) -> None:
    client.create_limit("late", 1)
    holder = _grant(client, ["late"])
    waiter = _queue(client, ["late"], holder_id="paused", lease_seconds=30)
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    backend.clock.advance(31)  # paused past its grant's lease
    other = _grant(client, ["late"])  # the expired lease is reaped on the way
    # It learns its grant is gone (once), then asks again and takes a place anew.
    gone = client.acquire_slots(["late"], 1, timeout=0, waiter_id=waiter, holder_id="paused")
    assert isinstance(gone, SlotWait)
    again = client.acquire_slots(["late"], 1, timeout=0, waiter_id=waiter, holder_id="paused")
    assert isinstance(again, SlotWait)
    assert _waiting(client, "late") == ["paused"]
    assert other.lease_id is not None
    client.release_slots(other.lease_id)
    mine = client.acquire_slots(["late"], 1, timeout=0, waiter_id=waiter, holder_id="paused")
    assert isinstance(mine, SlotGrant) and mine.lease_id is not None
    client.release_slots(mine.lease_id)


def test_a_granted_waiter_whose_process_died_is_reaped(client: Client) -> None:
    client.create_limit("y", 1)
    holder = _grant(client, ["y"])
    me = current_process()
    ghost = ProcessInfo(pid=_dead_pid(), host=me.host, node=me.node, proc_start=me.proc_start or 1)
    # Queued while its process lived (a sweep before the release would reap the waiter).
    _queue(client, ["y"], holder_id="ghost", process=ghost)
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    detail = client.inspect_limit("y")  # sweeps: the holder's process is gone
    assert detail.holders == () and detail.limit.active_slots == 0


def test_a_waiter_that_cancels_after_its_grant_gives_the_slot_on(
    client: Client, woken: list[str]
) -> None:
    client.create_limit("c", 1)
    holder = _grant(client, ["c"])
    w1 = _queue(client, ["c"], holder_id="w1")
    w2 = _queue(client, ["c"], holder_id="w2")
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    assert _holders(client, "c") == ["w1"]
    client.cancel_slot_wait(w1)
    assert _holders(client, "c") == ["w2"]
    assert woken == [w1, w2]
    client.cancel_slot_wait(w2)
    detail = client.inspect_limit("c")
    assert detail.holders == () and detail.waiters == () and detail.limit.active_slots == 0


def test_a_taken_grant_survives_a_late_cancel_and_leaves_nothing_behind(
    backend: Backend, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.create_limit("t", 1)
    holder = _grant(client, ["t"])
    waiter = _queue(client, ["t"])
    assert holder.lease_id is not None
    client.release_slots(holder.lease_id)
    orch = _orchestrator(backend)
    taken: list[str] = []
    take = orch.store.slots.handoff.take

    def counted(tx: Any, waiter_id: str, *args: Any) -> Any:
        taken.append(waiter_id)  # the take that deletes the grant: in a write transaction
        return take(tx, waiter_id, *args)

    monkeypatch.setattr(orch.store.slots.handoff, "take", counted)
    got = client.acquire_slots(["t"], 1, timeout=0, waiter_id=waiter)
    monkeypatch.undo()
    assert isinstance(got, SlotGrant) and got.lease_id is not None
    if backend.database_url is None:
        # SQLite: the waiter learns of its grant with a read; a write transaction
        # would cost every contended grant one more turn of the store's write lock.
        assert taken == []
    # A cancel arriving after the grant was taken gives nothing back: the slot is
    # its holder's until released.
    client.cancel_slot_wait(waiter)
    assert [lease.id for lease in client.inspect_limit("t").holders] == [got.lease_id]
    assert client.renew_leases([got.lease_id]) == []
    assert client.release_slots(got.lease_id) is True
    with orch.store.db.read() as tx:
        left = tx.one("SELECT COUNT(*) FROM handoffs")
    assert left is not None and left[0] == 0  # the grant's row went with its lease
    assert client.inspect_limit("t").limit.active_slots == 0


def test_taking_and_cancelling_a_grant_race_safely(client: Client) -> None:
    """Whichever wins, the slot is held by a caller that knows it, or by nobody."""
    client.create_limit("race", 1)
    for _ in range(12):
        holder = _grant(client, ["race"])
        waiter = _queue(client, ["race"])
        assert holder.lease_id is not None
        client.release_slots(holder.lease_id)
        start = threading.Barrier(2)
        got: list[SlotGrant | SlotWait] = []

        def take(
            w: str = waiter,
            barrier: threading.Barrier = start,
            out: list[SlotGrant | SlotWait] = got,
        ) -> None:
            barrier.wait()
            out.append(client.acquire_slots(["race"], 1, timeout=0, waiter_id=w))

        def cancel(w: str = waiter, barrier: threading.Barrier = start) -> None:
            barrier.wait()
            client.cancel_slot_wait(w)

        threads = [threading.Thread(target=take), threading.Thread(target=cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        (result,) = got
        detail = client.inspect_limit("race")
        if isinstance(result, SlotGrant):
            # Taken first (or, after the cancel, queued anew and granted): its lease is live.
            assert [lease.id for lease in detail.holders] == [result.lease_id]
            assert result.lease_id is not None
            assert client.renew_leases([result.lease_id]) == []
            client.release_slots(result.lease_id)
        else:
            assert detail.holders == ()
        client.cancel_slot_wait(waiter)  # a re-queued request, if any
        detail = client.inspect_limit("race")
        assert detail.holders == () and detail.waiters == ()
        assert detail.limit.active_slots == 0


def test_no_over_admission_through_handoffs(client: Client, woken: list[str]) -> None:
    """Threads loop on a limit of 2 while an observer outside headway counts holders."""
    client.create_limit("adm", 2)
    gate = [_grant(client, ["adm"]) for _ in range(2)]
    lock = threading.Lock()
    inside = [0]
    peak = [0]
    errors: list[BaseException] = []
    rounds, workers = 8, 6

    def work() -> None:
        try:
            for _ in range(rounds):
                with concurrency("adm", timeout_seconds=60):
                    with lock:
                        inside[0] += 1
                        peak[0] = max(peak[0], inside[0])
                    with lock:
                        inside[0] -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    # Every worker queued behind the gate before it opens: the first grants are handoffs.
    queued = threading.Event()
    for _ in range(600):
        if len(client.inspect_limit("adm").waiters) == workers:
            queued.set()
            break
        queued.wait(0.05)
    assert queued.is_set()
    for g in gate:
        assert g.lease_id is not None
        client.release_slots(g.lease_id)
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert 1 <= peak[0] <= 2
    # Only granted waiters are woken (one name each: none is left to retry).
    assert len(woken) >= 2
    detail = client.inspect_limit("adm")
    assert detail.holders == () and detail.waiters == () and detail.limit.active_slots == 0


_WORKER = """
import fcntl, os, random, sys, threading
from headway.concurrency.sync import concurrency

observer, limit, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
errors = []

def note(delta):
    # The observer knows nothing of headway: a sum of slots in use under flock.
    with open(observer, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        now, most, bad, entries = (int(x) for x in (fh.read().split() or [0] * 4))
        now += delta
        if delta > 0:
            entries += 1
            most = max(most, now)
            bad += now > limit
        fh.seek(0)
        fh.truncate()
        fh.write(f"{now} {most} {bad} {entries}")

def loop(seed):
    rng = random.Random(seed)
    try:
        for _ in range(rounds):
            slots = rng.choice((1, 1, 2))
            with concurrency("procs", occupy=slots, timeout_seconds=120):
                note(slots)
                note(-slots)
    except BaseException as exc:
        errors.append(exc)

workers = [threading.Thread(target=loop, args=(os.getpid() * 10 + i,)) for i in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
sys.exit(f"failed: {errors[0]!r}" if errors else 0)
"""


def test_no_over_admission_across_processes(client: Client, tmp_path: Any) -> None:
    """Processes of threads take 1 or 2 slots of a limit of 2; an outside observer sums them."""
    import os
    import sys

    client.create_limit("procs", 2)
    observer = tmp_path / "observer"
    processes, threads, rounds = 2, 3, 6
    command = [sys.executable, "-c", _WORKER, str(observer), "2", str(threads), str(rounds)]
    procs = [subprocess.Popen(command, env=dict(os.environ)) for _ in range(processes)]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0] * processes
    now, most, violations, entries = (int(x) for x in observer.read_text().split())
    assert violations == 0 and 1 <= most <= 2 and now == 0
    assert entries == processes * threads * rounds
    detail = client.inspect_limit("procs")
    assert detail.holders == () and detail.waiters == () and detail.limit.active_slots == 0


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_postgres_leaves_a_waiter_whose_other_limit_is_locked_to_retry(
    backend: Backend, client: Client, woken: list[str]
) -> None:
    """A release never waits for a lock out of name order: that waiter retries by itself.

    The release of ``b`` locks ``b``; its head waiter also wants ``a``, which
    sorts first and which another transaction holds. Waiting for ``a`` there
    could deadlock with a transaction that holds ``a`` and waits for ``b``, so
    the waiter is woken (not granted) and keeps its place; its own attempt,
    taking both locks in order, is granted once ``a`` is free.
    """
    if not backend.is_postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    import psycopg

    assert backend.database_url is not None
    client.create_limit("a", 1)
    client.create_limit("b", 1)
    on_b = _grant(client, ["b"])
    both = _queue(client, ["a", "b"], holder_id="both")
    blocker = psycopg.connect(
        backend.database_url.replace("postgresql+psycopg://", "postgresql://")
    )
    try:
        blocker.execute("SELECT name FROM limits WHERE name = 'a' FOR UPDATE")
        assert on_b.lease_id is not None
        client.release_slots(on_b.lease_id)  # returns: it does not wait for a's lock
        assert woken == [both]
        assert _holders(client, "b") == []
        assert _waiting(client, "b") == ["both"]
        assert isinstance(client.acquire_slots(["b"], 1), SlotWait)  # nobody passes it
    finally:
        blocker.rollback()
        blocker.close()
    grant = _take(client, ["a", "b"], both)
    assert grant.names == ("a", "b")


def test_postgres_a_denied_single_attempt_takes_no_lock(backend: Backend, client: Client) -> None:
    """One attempt that will not queue, on a full limit, is answered without its lock.

    Taking the limit's row lock writes (and waits for the disk at commit): an
    attempt that is denied on a committed state, with nothing for a reap to
    remove, must not queue behind those who have to write. Here another
    session holds the lock; the attempt is answered all the same.
    """
    if not backend.is_postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    import psycopg

    assert backend.database_url is not None
    client.create_limit("busy", 1)
    _grant(client, ["busy"])
    blocker = psycopg.connect(
        backend.database_url.replace("postgresql+psycopg://", "postgresql://")
    )
    answered = threading.Event()
    got: list[SlotGrant | SlotWait] = []

    def attempt() -> None:
        got.append(client.acquire_slots(["busy"], 1, timeout=0))
        answered.set()

    asker = threading.Thread(target=attempt)
    try:
        blocker.execute("SELECT name FROM limits WHERE name = 'busy' FOR UPDATE")
        asker.start()
        answered.wait(60)
        assert answered.is_set(), "the attempt waited for the limit's lock"
    finally:
        blocker.rollback()
        blocker.close()
        asker.join(60)
    (result,) = got
    assert isinstance(result, SlotWait) and "full" in result.reason, result


def test_postgres_a_grant_handed_while_the_waiter_asks_again_is_not_doubled(
    backend: Backend, client: Client
) -> None:
    """A waiter asking again while the release that hands it the slot is still open.

    The release has handed the slot to the waiter but not committed; the
    waiter asks again (room on the limit after the release: a 2-slot holder
    left, the waiter takes 1). The one-statement grant must not apply: its
    snapshot still has the waiter queued. The attempt then waits for the
    limit's lock and, once the release commits, takes the grant handed to it:
    one lease, not two. The release is the store's own statement, run on a
    connection of the test's in a transaction it holds open.
    """
    if backend.name != "embedded-postgres":
        pytest.skip("the one-statement grant is PostgreSQL's; driven from this process")
    import psycopg

    from headway.store.dialects import POSTGRESQL
    from headway.store.queries.slots import CALL_RELEASE
    from headway.store.slots.pg import constants

    assert backend.database_url is not None
    url = backend.database_url.replace("postgresql+psycopg://", "postgresql://")
    client.create_limit("race2", 2)
    holder = _grant(client, ["race2"], 2)
    waiter = _queue(client, ["race2"], holder_id="w")
    assert holder.lease_id is not None
    releaser = psycopg.connect(url)  # not autocommit: the release stays open
    admin = psycopg.connect(url, autocommit=True)
    got: list[SlotGrant | SlotWait] = []
    asker = threading.Thread(
        target=lambda: got.append(client.acquire_slots(["race2"], 1, timeout=0, waiter_id=waiter))
    )
    try:
        params = {"id": holder.lease_id, "now": backend.clock.now(), **constants(backend.settings)}
        releaser.execute(POSTGRESQL.sql(CALL_RELEASE), params)
        asker.start()
        blocked = threading.Event()
        for _ in range(600):  # until the asker's statement waits for the row lock
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= 1:
                blocked.set()
                break
            blocked.wait(0.05)
        assert blocked.is_set()
    finally:
        releaser.commit()
        releaser.close()
        admin.close()
        if asker.is_alive() or got:
            asker.join(60)
    (result,) = got
    assert isinstance(result, SlotGrant)
    detail = client.inspect_limit("race2")
    assert [lease.id for lease in detail.holders] == [result.lease_id]
    assert detail.limit.active_slots == 1
