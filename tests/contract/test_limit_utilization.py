"""Utilization while waiting: how much of a limit was held while anyone waited for it.

``inspect_limit`` and ``/metrics`` report it over the last minute, from the
grants, releases, leases and waiters the store recorded. Time is the store's
clock, moved by the test (it also runs with the wall clock, so each interval is
at least what the test moved it by, and at most that plus the real time the
test took). Runs on every backend.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from headway.client.base import Client
from headway.core.limits import UTILIZATION_WINDOW_SECONDS, SlotGrant, SlotWait
from helpers.metrics import lim, scrape

Backend = Any  # the conftest fixture's record (tests are not a package)


def _take(client: Client, slots: int, holder: str) -> str:
    grant = client.acquire_slots(["u"], slots, timeout=0, holder_id=holder, lease_seconds=600)
    assert isinstance(grant, SlotGrant) and grant.lease_id is not None, grant
    return grant.lease_id


def _queue(client: Client, slots: int, holder: str) -> str:
    waiter = uuid.uuid4().hex
    wait = client.acquire_slots(
        ["u"], slots, timeout=0, waiter_id=waiter, holder_id=holder, lease_seconds=600
    )
    assert isinstance(wait, SlotWait), wait
    return waiter


def _about(seconds: float, moved: float, started: float) -> bool:
    # ``moved`` by the test, plus the wall-clock time the test has taken so far.
    return moved - 0.01 <= seconds <= moved + (time.monotonic() - started) + 0.01


def test_slots_left_free_while_someone_waits_lower_it(backend: Backend, client: Client) -> None:
    started = time.monotonic()
    client.create_limit("u", 2)
    detail = client.inspect_limit("u")
    assert detail.utilization is not None and detail.utilization.share is None  # nobody waited
    assert detail.utilization.window_seconds == UTILIZATION_WINDOW_SECONDS
    first = _take(client, 1, "a")  # one of two slots held
    backend.clock.advance(1)
    _queue(client, 2, "w")  # needs both: waits while one sits free
    backend.clock.advance(4)
    used = client.inspect_limit("u").utilization
    assert used is not None and used.share == pytest.approx(0.5, abs=0.01)
    assert _about(used.waiting_seconds, 4.0, started), used
    # The release hands both slots to the waiter at once: the wait ends there.
    assert client.release_slots(first)
    backend.clock.advance(3)
    used = client.inspect_limit("u").utilization
    assert used is not None and used.share == pytest.approx(0.5, abs=0.01)
    assert _about(used.waiting_seconds, 4.0, started), used
    [holder] = client.inspect_limit("u").holders
    assert holder.holder.id == "w"


def test_a_slot_handed_straight_on_is_fully_used(backend: Backend, client: Client) -> None:
    started = time.monotonic()
    client.create_limit("u", 1)
    lease = _take(client, 1, "a")
    backend.clock.advance(1)
    _queue(client, 1, "w")
    backend.clock.advance(2)
    assert client.release_slots(lease)  # handed to w in the same transaction
    backend.clock.advance(1)
    used = client.inspect_limit("u").utilization
    assert used is not None and used.share == pytest.approx(1.0, abs=0.01)
    assert _about(used.waiting_seconds, 2.0, started), used
    stats = {s.name: s for s in client.limit_stats()}
    assert stats["u"].utilization_while_waiting == pytest.approx(1.0, abs=0.01)
    # Out of the window, the wait no longer counts.
    backend.clock.advance(UTILIZATION_WINDOW_SECONDS + 1)
    later = client.inspect_limit("u").utilization
    assert later is not None and later.share is None


def test_metrics_report_it_per_limit(backend: Backend, client: Client) -> None:
    client.create_limit("u", 2)
    client.create_limit("calm", 1)
    client.create_limit("rate", 5, slot_decay_per_second=1.0)
    _take(client, 1, "a")
    backend.clock.advance(1)
    _queue(client, 2, "w")
    backend.clock.advance(2)
    samples = scrape(backend)["headway_limit_utilization_while_waiting"]
    assert samples[lim("u")] == pytest.approx(0.5, abs=0.01)
    # Nobody waited for "calm", and a rate limit holds no slots: no sample.
    assert lim("calm") not in samples and lim("rate") not in samples
    rate = client.inspect_limit("rate")
    assert rate.utilization is None
