"""The slot engine through the Client and the concurrency API, on every backend.

Limits are created, changed and deleted live; ``concurrency()`` holds slots
all-or-nothing and gives them back however its block ends; waiters are served
FIFO within priority, a large request is not passed by later small ones, and a
waiter that gives up leaves nothing behind.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import pytest

from headway.client.base import Client
from headway.concurrency._leases import _renewer
from headway.concurrency.sync import concurrency, rate_limit
from headway.core.limits import SlotGrant, SlotWait
from headway.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    ConflictError,
    LeaseLostError,
    ObjectAlreadyExists,
    ObjectNotFound,
    ValidationError,
)
from helpers.waiting import wait_until

if TYPE_CHECKING:
    from conftest import Backend


def waiters(client: Client, name: str) -> int:
    return len(client.inspect_limit(name).waiters)


class Holder(threading.Thread):
    """A thread that takes slots with ``concurrency()`` and holds them until told to stop."""

    def __init__(self, name: str, label: str, order: list[str], **kw: object) -> None:
        super().__init__(daemon=True)
        self.limit_name = name
        self.label = label
        self.order = order
        self.kw = kw
        self.entered = threading.Event()
        self.leave = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with concurrency(self.limit_name, **self.kw):  # type: ignore[arg-type]
                self.order.append(self.label)
                self.entered.set()
                self.leave.wait(30)
        except BaseException as exc:
            self.error = exc
            self.entered.set()


# -- limits ----------------------------------------------------------------------------
def test_create_read_list_update_delete(client: Client) -> None:
    created = client.create_limit("db", 3)
    assert (created.name, created.limit, created.active, created.active_slots) == ("db", 3, True, 0)
    client.create_limit("tag:io", 1, active=False)
    client.create_limit("api", 10, slot_decay_per_second=2.5)
    assert [lim.name for lim in client.list_limits()] == ["api", "db", "tag:io"]
    assert [lim.name for lim in client.list_limits(prefix="tag:")] == ["tag:io"]
    assert client.read_limit("api").slot_decay_per_second == 2.5
    updated = client.update_limit("db", limit=5, active=False)
    assert (updated.limit, updated.active) == (5, False)
    client.delete_limit("db")
    with pytest.raises(ObjectNotFound):
        client.read_limit("db")


def test_bad_input_is_refused_and_changes_nothing(client: Client) -> None:
    client.create_limit("db", 2)
    with pytest.raises(ObjectAlreadyExists):
        client.create_limit("db", 5)
    for bad in (-1, 1.5):  # 0 is a limit: it admits nothing (test_zero_limits.py)
        with pytest.raises(ValidationError):
            client.create_limit("other", bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            client.update_limit("db", limit=bad)
    for name in ("", "x" * 201):
        with pytest.raises(ValidationError):
            client.create_limit(name, 1)
    with pytest.raises(ValidationError):
        client.update_limit("db", slot_decay_per_second=-1)
    with pytest.raises(ObjectNotFound):
        client.update_limit("nope", limit=3)
    with pytest.raises(ObjectNotFound):
        client.delete_limit("nope")
    assert [(lim.name, lim.limit) for lim in client.list_limits()] == [("db", 2)]


# -- holding slots ------------------------------------------------------------------------
def test_concurrency_holds_while_the_block_runs_and_releases_after(client: Client) -> None:
    client.create_limit("db", 2)
    with concurrency("db", occupy=2) as held:
        assert held.names == ("db",) and not held.lost
        detail = client.inspect_limit("db")
        assert detail.limit.active_slots == 2
        [lease] = detail.holders
        assert lease.slots == {"db": 2}
        assert lease.holder.kind == "code" and lease.holder.pid > 0 and lease.holder.host
        assert lease.expires > lease.created
    assert client.read_limit("db").active_slots == 0
    assert client.inspect_limit("db").holders == ()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_slots_are_released_when_the_block_raises(client: Client, error: type) -> None:
    client.create_limit("db", 1)
    with pytest.raises(error), concurrency("db"):
        assert client.read_limit("db").active_slots == 1
        raise error("boom")
    assert client.read_limit("db").active_slots == 0


def test_several_names_are_all_or_nothing(client: Client) -> None:
    client.create_limit("a", 2)
    client.create_limit("b", 1)
    with concurrency("b"):
        with (
            pytest.raises(AcquireConcurrencySlotTimeoutError),
            concurrency(["a", "b"], timeout_seconds=0),
        ):
            pass
        # Nothing was taken on "a" while "b" was full.
        assert client.read_limit("a").active_slots == 0
    with concurrency(["a", "b"]):
        assert client.read_limit("a").active_slots == 1
        assert client.read_limit("b").active_slots == 1
    assert client.read_limit("a").active_slots == 0


def test_unknown_name_runs_unlimited_with_a_warning_each_time(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="headway.concurrency")
    name = f"unknown-{time.monotonic_ns()}"
    for _ in range(3):
        with concurrency(name) as held:
            assert held.unknown == (name,) and held.lease_id is None
    assert sum(name in r.getMessage() for r in caplog.records) == 3
    with pytest.raises(ConcurrencySlotAcquisitionError), concurrency(name, strict=True):
        pass


def test_a_disabled_limit_is_not_applied(client: Client) -> None:
    client.create_limit("db", 1, active=False)
    with concurrency("db"), concurrency("db") as inner:
        assert inner.inactive == ("db",)
    assert client.read_limit("db").active_slots == 0


def test_impossible_requests_fail_at_once(client: Client) -> None:
    client.create_limit("db", 2)
    with pytest.raises(ValidationError, match="its limit is 2"), concurrency("db", occupy=3):
        pass
    with pytest.raises(ValidationError):
        concurrency("db", occupy=0)
    with pytest.raises(ValidationError):
        concurrency("db", timeout_seconds=-1)
    assert waiters(client, "db") == 0


def test_timeout_raises_and_leaves_no_waiter(client: Client) -> None:
    client.create_limit("db", 1)
    caught: list[BaseException] = []

    def wait_in_vain() -> None:
        try:
            with concurrency("db", timeout_seconds=2):
                pass
        except BaseException as exc:
            caught.append(exc)

    with concurrency("db"):
        waiter = threading.Thread(target=wait_in_vain)
        waiter.start()
        # It waited in the queue (it did not give up at once)...
        wait_until(lambda: waiters(client, "db") == 1, "the request queued")
        waiter.join(30)
        assert not waiter.is_alive()
        # ...and gave up with the timeout error while the slot was still held.
        [error] = caught
        assert isinstance(error, AcquireConcurrencySlotTimeoutError) and "full" in str(error)
        assert isinstance(error, TimeoutError)
        assert waiters(client, "db") == 0


def test_a_request_that_must_wait_queues_in_its_first_attempt(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under contention every grant pays for each attempt its waiter makes under
    # the store's write lock (or over HTTP): trying once and then queuing in a
    # second attempt cost one more of them per grant.
    client.create_limit("db", 1)
    calls: list[tuple[float | None, str | None]] = []
    attempt = client.acquire_slots

    def counted(*args: object, **kw: object) -> SlotGrant | SlotWait:
        calls.append((kw.get("timeout"), kw.get("waiter_id")))  # type: ignore[arg-type]
        return attempt(*args, **kw)  # type: ignore[arg-type]

    with concurrency("db"):
        monkeypatch.setattr(client, "acquire_slots", counted)
        waiter = Holder("db", "waiter", [], timeout_seconds=30)
        waiter.start()
        wait_until(lambda: waiters(client, "db") == 1, "the request queued")
        # One call, allowed to wait: nothing before it.
        assert len(calls) == 1 and calls[0][0] != 0
    assert waiter.entered.wait(30)
    waiter.leave.set()
    waiter.join(30)
    assert waiter.error is None
    # A request that may not wait still makes its one attempt, and queues nothing.
    with concurrency("db"), pytest.raises(AcquireConcurrencySlotTimeoutError):
        with concurrency("db", timeout_seconds=0):
            pass
    assert waiters(client, "db") == 0


def test_a_single_attempt_through_the_client(client: Client) -> None:
    client.create_limit("db", 1)
    grant = client.acquire_slots(["db"], 1, timeout=0)
    assert isinstance(grant, SlotGrant) and grant.lease_id
    again = client.acquire_slots(["db"], 1, timeout=0)
    assert isinstance(again, SlotWait) and "full" in again.reason
    assert waiters(client, "db") == 0  # an ungranted single attempt leaves nothing queued
    assert client.release_slots(grant.lease_id) is True
    assert client.release_slots(grant.lease_id) is False  # already gone


def test_a_named_waiter_keeps_its_place_between_calls(client: Client) -> None:
    client.create_limit("db", 1)
    grant = client.acquire_slots(["db"], 1)
    assert isinstance(grant, SlotGrant) and grant.lease_id
    first = client.acquire_slots(["db"], 1, timeout=0.05, waiter_id="w-1")
    assert isinstance(first, SlotWait)
    assert [w.position for w in client.inspect_limit("db").waiters] == [1]
    # A later request does not pass the queued one when the slot frees: the
    # release has handed the slot to it already (direct handoff).
    client.release_slots(grant.lease_id)
    assert len(client.inspect_limit("db").holders) == 1
    later = client.acquire_slots(["db"], 1, timeout=0)
    assert isinstance(later, SlotWait) and "full" in later.reason
    mine = client.acquire_slots(["db"], 1, timeout=1, waiter_id="w-1")
    assert isinstance(mine, SlotGrant) and mine.lease_id
    assert waiters(client, "db") == 0
    client.release_slots(mine.lease_id)


# -- fairness -----------------------------------------------------------------------------
def test_waiters_are_served_fifo(client: Client) -> None:
    client.create_limit("db", 1)
    order: list[str] = []
    first = Holder("db", "holder", order)
    first.start()
    assert first.entered.wait(10)
    queued = []
    for i, label in enumerate(["w1", "w2", "w3"]):
        h = Holder("db", label, order)
        h.start()
        queued.append(h)
        wait_until(lambda n=i + 1: waiters(client, "db") == n)
    first.leave.set()
    for h in queued:
        assert h.entered.wait(10), h.label
        h.leave.set()
        h.join(10)
        assert h.error is None
    assert order == ["holder", "w1", "w2", "w3"]


def test_higher_priority_goes_first(client: Client) -> None:
    client.create_limit("db", 1)
    order: list[str] = []
    first = Holder("db", "holder", order)
    first.start()
    assert first.entered.wait(10)
    low = Holder("db", "low", order, priority=0)
    low.start()
    wait_until(lambda: waiters(client, "db") == 1)
    high = Holder("db", "high", order, priority=5)
    high.start()
    wait_until(lambda: waiters(client, "db") == 2)
    assert [w.priority for w in client.inspect_limit("db").waiters] == [5, 0]
    first.leave.set()
    for h in (high, low):
        assert h.entered.wait(10)
        h.leave.set()
        h.join(10)
    assert order == ["holder", "high", "low"]


def test_a_big_request_is_not_starved_by_later_small_ones(client: Client) -> None:
    client.create_limit("db", 3)
    order: list[str] = []
    small_holder = Holder("db", "first", order)
    small_holder.start()
    assert small_holder.entered.wait(10)
    big = Holder("db", "big", order, occupy=3)
    big.start()
    wait_until(lambda: waiters(client, "db") == 1)
    # Two slots are free, but every later 1-slot request must queue behind the big one.
    for _ in range(5):
        late = client.acquire_slots(["db"], 1, timeout=0)
        assert isinstance(late, SlotWait) and "ahead" in late.reason
    smalls = [Holder("db", f"small{i}", order) for i in range(3)]
    for i, s in enumerate(smalls):
        s.start()
        wait_until(lambda n=i + 2: waiters(client, "db") == n)
    small_holder.leave.set()
    assert big.entered.wait(10)
    assert order[:2] == ["first", "big"]
    big.leave.set()
    for s in smalls:
        assert s.entered.wait(10)
    assert sorted(order[2:]) == ["small0", "small1", "small2"]
    for s in smalls:
        s.leave.set()
        s.join(10)


def test_a_waiter_that_gives_up_unblocks_those_behind_it(client: Client) -> None:
    client.create_limit("db", 2)
    order: list[str] = []
    holder = Holder("db", "holder", order)
    holder.start()
    assert holder.entered.wait(10)
    big = Holder("db", "big", order, occupy=2, timeout_seconds=0.5)
    big.start()
    wait_until(lambda: waiters(client, "db") == 1)
    small = Holder("db", "small", order)
    small.start()
    # The small request waits behind the big one, then goes when the big one times out.
    assert small.entered.wait(10)
    big.join(10)
    assert isinstance(big.error, AcquireConcurrencySlotTimeoutError)
    assert order == ["holder", "small"]
    for h in (holder, small):
        h.leave.set()
        h.join(10)
    assert client.read_limit("db").active_slots == 0


# -- live changes ------------------------------------------------------------------------
def test_raising_a_limit_wakes_waiters_and_lowering_keeps_holders(client: Client) -> None:
    client.create_limit("db", 1)
    order: list[str] = []
    a = Holder("db", "a", order)
    a.start()
    assert a.entered.wait(10)
    b = Holder("db", "b", order)
    b.start()
    wait_until(lambda: waiters(client, "db") == 1)
    client.update_limit("db", limit=2)
    assert b.entered.wait(10)
    # Lowering below the slots held keeps both holders; new requests wait.
    lowered = client.update_limit("db", limit=1)
    assert lowered.active_slots == 2 and len(client.inspect_limit("db").holders) == 2
    assert isinstance(client.acquire_slots(["db"], 1, timeout=0), SlotWait)
    a.leave.set()
    a.join(10)
    assert isinstance(client.acquire_slots(["db"], 1, timeout=0), SlotWait)  # 1 held of 1
    b.leave.set()
    b.join(10)
    grant = client.acquire_slots(["db"], 1, timeout=0)
    assert isinstance(grant, SlotGrant) and grant.lease_id
    client.release_slots(grant.lease_id)


def test_disabling_a_limit_lets_its_waiters_through(client: Client) -> None:
    client.create_limit("db", 1)
    order: list[str] = []
    a = Holder("db", "a", order)
    a.start()
    assert a.entered.wait(10)
    b = Holder("db", "b", order)
    b.start()
    wait_until(lambda: waiters(client, "db") == 1)
    client.update_limit("db", active=False)
    assert b.entered.wait(10)
    for h in (a, b):
        h.leave.set()
        h.join(10)
        assert h.error is None


def test_delete_is_refused_with_holders_unless_forced(client: Client) -> None:
    client.create_limit("db", 2)
    with pytest.raises(LeaseLostError), concurrency("db") as held:
        with pytest.raises(ConflictError, match="holder"):
            client.delete_limit("db")
        assert client.read_limit("db").active_slots == 1
        client.delete_limit("db", force=True)
        with pytest.raises(ObjectNotFound):
            client.read_limit("db")
        assert not held.lost or held.lost  # the block learns it at exit at the latest
    with concurrency("db", strict=False) as again:
        assert again.unknown == ("db",)


def test_reset_frees_every_slot_and_holders_learn_it(client: Client) -> None:
    client.create_limit("db", 1)
    with pytest.raises(LeaseLostError), concurrency("db"):
        reset = client.reset_limit("db")
        assert reset.active_slots == 0 and client.inspect_limit("db").holders == ()
        with concurrency("db", timeout_seconds=0):
            pass
    assert client.read_limit("db").active_slots == 0


# -- rate limits ---------------------------------------------------------------------------
def test_rate_limit_takes_tokens_that_decay(client: Client) -> None:
    client.create_limit("api", 3, slot_decay_per_second=1.0)
    for _ in range(3):
        rate_limit("api")
    # The bucket is full: a token comes back only by decay (1 per second).
    with pytest.raises(AcquireConcurrencySlotTimeoutError, match="full"):
        rate_limit("api", timeout_seconds=0)
    assert client.read_limit("api").active_slots > 1  # tokens are never given back
    assert client.inspect_limit("api").holders == ()  # and no lease holds them
    rate_limit("api", timeout_seconds=10)  # granted once enough has decayed
    assert client.read_limit("api").grants == 4


def test_active_slots_are_whole_and_the_exact_value_is_kept(
    client: Client, backend: Backend
) -> None:
    # Reported as admission counts them, rounded up (as Prefect reports them);
    # the exact decayed value travels beside it through every transport.
    client.create_limit("api", 10, active_slots=10, slot_decay_per_second=0.1)
    backend.clock.advance(30.5)
    for limit in (client.read_limit("api"), *client.list_limits(prefix="api")):
        assert limit.active_slots == 7 and isinstance(limit.active_slots, int)
        assert limit.exact_active_slots is not None and 6.0 < limit.exact_active_slots <= 6.95


def test_rate_limit_needs_a_decaying_limit(client: Client) -> None:
    client.create_limit("db", 3)
    with pytest.raises(ValidationError, match="decay"):
        rate_limit("db")
    assert client.read_limit("db").active_slots == 0


# -- leases --------------------------------------------------------------------------------
def test_the_lease_is_renewed_while_held(client: Client, backend: Backend) -> None:
    lease = backend.settings.concurrency_lease_seconds
    client.create_limit("db", 1)
    with concurrency("db") as held:
        [first] = client.inspect_limit("db").holders
        # Two thirds of the lease later the renewer's round comes (run now, not awaited).
        backend.clock.advance(lease * 2 / 3)
        _renewer().renew_now()
        [renewed] = client.inspect_limit("db").holders
        assert renewed.expires > first.expires
        # Past the original expiry, a sweep must not take the slot: it was renewed.
        backend.clock.advance(lease / 2)
        client.sweep_slots()
        assert [h.id for h in client.inspect_limit("db").holders] == [held.lease_id]
        assert not held.lost
    assert client.read_limit("db").active_slots == 0


def test_an_expired_unrenewed_lease_is_reaped(client: Client, backend: Backend) -> None:
    client.create_limit("db", 1)
    grant = client.acquire_slots(["db"], 1)  # held without renewal, as by a frozen process
    assert isinstance(grant, SlotGrant) and grant.expires is not None
    # Not yet expired: the slot is still taken.
    backend.clock.advance(grant.expires - backend.clock.now() - 1)
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        with concurrency("db", timeout_seconds=0):
            pass
    backend.clock.advance(2)
    # The next request that would have to wait reaps it and gets the slot.
    with concurrency("db", timeout_seconds=5):
        assert len(client.inspect_limit("db").holders) == 1
    assert grant.lease_id is not None
    assert client.renew_leases([grant.lease_id]) == [grant.lease_id]
    assert client.release_slots(grant.lease_id) is False


def test_a_limit_created_while_a_request_waits_keeps_it_first_there(client: Client) -> None:
    client.create_limit("a", 1)
    order: list[str] = []
    holder = Holder("a", "holder", order)
    holder.start()
    assert holder.entered.wait(10)
    both = threading.Thread(target=lambda: _hold_both(order), daemon=True)
    both.start()
    wait_until(lambda: waiters(client, "a") == 1)
    client.create_limit("b", 1)
    # The waiting request takes its place on "b" too...
    wait_until(lambda: waiters(client, "b") == 1)
    # ...so a later request for "b" alone does not pass it, though "b" is free.
    late = client.acquire_slots(["b"], 1, timeout=0)
    assert isinstance(late, SlotWait) and "ahead" in late.reason
    holder.leave.set()
    both.join(10)
    assert order == ["holder", "a+b"]
    assert client.read_limit("b").grants == 1


def _hold_both(order: list[str]) -> None:
    with concurrency(["a", "b"]):
        order.append("a+b")
