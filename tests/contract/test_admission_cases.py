"""Where a handoff grants differently from the request's own attempt (the admission rule).

Minimized from the admission property test (test_admission_property.py), whose
model follows the store where it does not keep the rule yet (``SlotModel``'s
``whole_request``). The first gap (a handoff's grantee leaving other queues)
is fixed and kept as a regression test, and so is the second (a handoff deciding
only on the limits its waiter had rows on: a limit enabled while it waited was
passed over; fixed by migration 0012). Each has a twin: the same situation
resolved by the request's own attempt, which keeps the rule.
Runs on every backend.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from headway.client.base import Client
from headway.core.limits import SlotGrant, SlotWait

if TYPE_CHECKING:
    from conftest import Backend


def _queue(client: Client, names: list[str], holder: str, **kw: Any) -> str:
    """One attempt under a new waiter id, which must queue; the id."""
    waiter = uuid.uuid4().hex
    result = client.acquire_slots(names, 1, timeout=0, waiter_id=waiter, holder_id=holder, **kw)
    assert isinstance(result, SlotWait), result
    return waiter


def _grant(client: Client, names: list[str], holder: str) -> str:
    result = client.acquire_slots(names, 1, timeout=0, holder_id=holder)
    assert isinstance(result, SlotGrant) and result.lease_id is not None, result
    return result.lease_id


def _holders(client: Client, name: str) -> list[str | None]:
    return sorted((lease.holder.id for lease in client.inspect_limit(name).holders), key=str)


def _waiting(client: Client, name: str) -> list[str | None]:
    return [w.holder.id for w in client.inspect_limit(name).waiters]


def _blocked_behind_a_two_name_waiter(client: Client) -> tuple[str, str]:
    """a (1) held by r1 for 2 s; r2 waits for a and b; r3 waits for b, behind r2 there."""
    client.create_limit("a", 1)
    client.create_limit("b", 2)
    held = client.acquire_slots(["a"], 1, timeout=0, holder_id="r1", lease_seconds=2)
    assert isinstance(held, SlotGrant) and held.lease_id is not None
    r2 = _queue(client, ["a", "b"], "r2")
    _queue(client, ["b"], "r3")
    # b has room for both, but r3 may not pass r2 there.
    assert _holders(client, "b") == []
    assert _waiting(client, "b") == ["r2", "r3"]
    return held.lease_id, r2


def test_a_waiter_granted_by_a_release_unblocks_those_behind_it(client: Client) -> None:
    lease, _ = _blocked_behind_a_two_name_waiter(client)
    client.release_slots(lease)
    # r2 is handed a and b; it leaves b's queue, where r3 is now first and fits.
    assert _holders(client, "a") == ["r2"]
    assert _holders(client, "b") == ["r2", "r3"]
    assert _waiting(client, "b") == []


def test_a_waiter_granted_on_its_own_attempt_unblocks_those_behind_it(
    backend: Backend, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_background_sweep(backend, monkeypatch)
    _, r2 = _blocked_behind_a_two_name_waiter(client)
    # r1's lease expires (its waiters' rows do not): nobody reaps it but r2's attempt.
    backend.clock.advance(5)
    grant = client.acquire_slots(["a", "b"], 1, timeout=0, waiter_id=r2, holder_id="r2")
    assert isinstance(grant, SlotGrant)
    # r2 leaving b's queue by its own attempt hands b on to r3.
    assert _holders(client, "b") == ["r2", "r3"]
    assert _waiting(client, "b") == []


def _enabled_while_waiting(client: Client) -> str:
    """r2 queues for a (held by r1) and b while b is disabled; b is enabled again."""
    client.create_limit("a", 1)
    client.create_limit("b", 1)
    client.update_limit("b", active=False)
    _grant(client, ["a"], "r1")
    r2 = _queue(client, ["a", "b"], "r2")
    client.update_limit("b", active=True)
    return r2


def test_a_handoff_grants_all_of_a_request_or_nothing(client: Client) -> None:
    r2 = _enabled_while_waiting(client)
    lease = _grant(client, ["b"], "r3")  # b is full, and nobody waits on it
    (r1,) = client.inspect_limit("a").holders
    client.release_slots(r1.id)
    # r2 asked for a and b: with b full it may not hold a alone.
    assert _holders(client, "a") == []
    assert _holders(client, "b") == ["r3"]
    grant = client.acquire_slots(["a", "b"], 1, timeout=0, waiter_id=r2, holder_id="r2")
    assert isinstance(grant, SlotWait), grant
    client.release_slots(lease)


def test_an_attempt_after_a_limit_is_enabled_queues_on_it_too(client: Client) -> None:
    r2 = _enabled_while_waiting(client)
    # The twin: r2 comes back before the release, and takes its place on b as well.
    again = client.acquire_slots(["a", "b"], 1, timeout=0, waiter_id=r2, holder_id="r2")
    assert isinstance(again, SlotWait), again
    assert _waiting(client, "b") == ["r2"]
    client.update_limit("b", active_slots=1)  # b is full (its count set by hand)
    (r1,) = client.inspect_limit("a").holders
    client.release_slots(r1.id)
    # The handoff decides on a and b: b is full, so r2 holds nothing yet.
    assert _holders(client, "a") == []
    assert _waiting(client, "a") == ["r2"]
    client.update_limit("b", active_slots=0)
    assert _holders(client, "a") == ["r2"]
    assert _holders(client, "b") == ["r2"]


def _no_background_sweep(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Expired leases are reaped only where the test makes them (as embedded)."""
    if backend.server is not None:

        async def no_sweep() -> None:
            return None

        monkeypatch.setattr(backend.server.app.state.services, "sweep_once", no_sweep)
