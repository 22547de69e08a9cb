"""The lease renewer: one thread renews every held lease; a lost lease is reported.

A recording fake stands in for the client (only ``renew_leases`` and
``release_slots`` are called), so this checks the renewer's own logic.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from headway.concurrency._leases import _renewer, hold
from headway.core.limits import SlotGrant
from headway.exceptions import LeaseLostError


class FakeClient:
    def __init__(self, lost: set[str] | None = None) -> None:
        self.renewed: list[tuple[list[str], float]] = []
        self.lost = lost or set()
        self.released: list[str] = []
        self.calls = threading.Condition()

    def renew_leases(self, lease_ids: list[str], lease_seconds: float) -> list[str]:
        with self.calls:
            self.renewed.append((list(lease_ids), lease_seconds))
            self.calls.notify_all()
        return [i for i in lease_ids if i in self.lost]

    def release_slots(self, lease_id: str) -> bool:
        self.released.append(lease_id)
        return lease_id not in self.lost

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        with self.calls:
            assert self.calls.wait_for(predicate, timeout), "renewer did not renew in time"


def grant(lease_id: str, lease_seconds: float) -> SlotGrant:
    return SlotGrant(lease_id, ("db",), 1, lease_seconds=lease_seconds, expires=0.0)


def test_held_leases_are_renewed_together_until_released() -> None:
    client = FakeClient()
    a = hold(client, grant("lease-a", 0.3))  # type: ignore[arg-type]
    b = hold(client, grant("lease-b", 0.3))  # type: ignore[arg-type]
    client.wait_for(lambda: any(set(ids) == {"lease-a", "lease-b"} for ids, _ in client.renewed))
    assert all(seconds == 0.3 for _, seconds in client.renewed)
    a.release()
    b.release()
    assert client.released == ["lease-a", "lease-b"]
    count = len(client.renewed)
    # Released leases are renewed no more.
    c = hold(client, grant("lease-c", 0.3))  # type: ignore[arg-type]
    client.wait_for(lambda: len(client.renewed) > count + 1)
    assert all("lease-a" not in ids for ids, _ in client.renewed[count + 1 :])
    c.release()


def test_a_lost_lease_is_marked_and_raises_at_release() -> None:
    client = FakeClient(lost={"lease-x"})
    held = hold(client, grant("lease-x", 0.3))  # type: ignore[arg-type]
    client.wait_for(lambda: any("lease-x" in ids for ids, _ in client.renewed))
    assert held.lost
    with pytest.raises(LeaseLostError):
        held.check()
    with pytest.raises(LeaseLostError):
        held.release()


def test_a_shorter_lease_brings_the_next_round_forward() -> None:
    client = FakeClient()
    long = hold(client, grant("lease-long", 60.0))  # type: ignore[arg-type]
    short = hold(client, grant("lease-short", 0.3))  # type: ignore[arg-type]
    # Renewed at a third of 0.3 s, not after 20 s.
    client.wait_for(lambda: any("lease-short" in ids for ids, _ in client.renewed), timeout=5)
    short.release()
    long.release()


def test_grants_without_a_lease_are_not_renewed() -> None:
    client = FakeClient()
    held = hold(client, SlotGrant(None, (), 1, unknown=("nope",)))  # type: ignore[arg-type]
    held.release()
    assert client.released == [] and not held.lost


class ReleasedDuringRenewal(FakeClient):
    """Its holder gives the lease back while a renewal of it is on the way: the
    store then finds no such lease, and says so."""

    def __init__(self) -> None:
        super().__init__()
        self.held: Any = None

    def renew_leases(self, lease_ids: list[str], lease_seconds: float) -> list[str]:
        self.held.release()
        self.lost = set(lease_ids)  # gone from the store: released
        return super().renew_leases(lease_ids, lease_seconds)

    def release_slots(self, lease_id: str) -> bool:
        self.released.append(lease_id)
        return True


def test_a_lease_released_while_its_renewal_ran_is_not_reported_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = ReleasedDuringRenewal()
    held = hold(client, grant("lease-r", 60.0))  # type: ignore[arg-type]
    client.held = held
    with caplog.at_level("WARNING", logger="headway"):
        _renewer().renew_now()
    assert client.released == ["lease-r"]
    assert held.released and not held.lost
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
