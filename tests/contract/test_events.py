"""Events: every slot grant, denial, release, expiry and reap, and every state change.

Run on every backend. Events written by another process (a subprocess holder,
the server) are read back through the Client, waiting with a timeout where a
process writes them in its next batch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from headway import exceptions
from headway.client.base import Client
from headway.core.events import Event
from headway.core.limits import SlotGrant, SlotWait
from headway.core.states import Completed, Running
from helpers.waiting import wait_until

if TYPE_CHECKING:
    from conftest import Backend

HOLD_AND_HANG = """
import sys, time
from headway.client.base import get_client
client = get_client()
client.acquire_slots(["crashy"], 2, holder_id=sys.argv[1], lease_seconds=600)
print("held", flush=True)
time.sleep(600)
"""


def wait_for(read: Callable[[], list[Event]], check: Callable[[list[Event]], bool]) -> list[Event]:
    """Wait until the events ``read`` returns pass ``check``; those events."""
    seen: list[Event] = []

    def passes() -> bool:
        seen[:] = read()
        return check(seen)

    wait_until(passes, "the events")
    return seen


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def test_grant_denial_release_and_state_changes(client: Client) -> None:
    run_a, run_b = str(uuid.uuid4()), str(uuid.uuid4())
    client.create_flow_run(id=run_a, name="a", flow_name="f", state=Running())
    client.create_limit("db", 1)
    grant = client.acquire_slots(["db"], 1, holder_id=run_a)
    assert isinstance(grant, SlotGrant)
    waited = client.acquire_slots(["db"], 1, holder_id=run_b, timeout=0.2)
    assert isinstance(waited, SlotWait)
    client.release_slots(grant.lease_id)
    client.set_flow_run_state(run_a, Completed())

    mine = wait_for(
        lambda: list(client.read_events(run_id=run_a).events),
        lambda ev: "slot.released" in kinds(ev) and "state.COMPLETED" in kinds(ev),
    )
    assert kinds(mine) == ["state.RUNNING", "slot.granted", "slot.released", "state.COMPLETED"]
    granted, released = mine[1], mine[2]
    assert (granted.limit_name, granted.slots, granted.seconds) == ("db", 1, 0.0)
    assert grant.lease_id is not None and grant.lease_id in (granted.detail or "")
    assert released.seconds is not None and released.seconds >= 0
    assert mine == sorted(mine, key=lambda e: e.timestamp)

    on_db = client.read_events(limit_name="db").events
    assert kinds(on_db) == ["limit.created", "slot.granted", "slot.denied", "slot.released"]
    denied = on_db[2]
    assert denied.run_id == run_b and denied.slots == 1 and "priority=0" in (denied.detail or "")
    assert all(e.limit_name == "db" for e in on_db)
    assert kinds(client.read_events(kind="slot.g").events) == ["slot.granted"]
    assert kinds(client.read_events(run_id=run_a, kind="state").events) == [
        "state.RUNNING",
        "state.COMPLETED",
    ]
    # The unfiltered feed shows flow-run state changes with the slot events, in time order.
    feed = client.read_events().events
    assert {"state.RUNNING", "slot.denied", "limit.created"} <= set(kinds(feed))
    assert list(feed) == sorted(feed, key=lambda e: e.timestamp)
    assert kinds(client.read_events(limit=2).events) == kinds(feed)[-2:]


def test_cursor_follows_only_new_events(client: Client) -> None:
    client.create_limit("f1", 1)
    page = client.read_events(limit_name="f1")
    assert kinds(list(page.events)) == ["limit.created"]
    assert client.read_events(limit_name="f1", after=page.cursor).events == ()
    grant = client.acquire_slots(["f1"], 1)
    assert isinstance(grant, SlotGrant)
    client.release_slots(grant.lease_id)
    later = client.read_events(limit_name="f1", after=page.cursor)
    assert kinds(list(later.events)) == ["slot.granted", "slot.released"]
    assert client.read_events(limit_name="f1", after=later.cursor).events == ()
    # A page at a time: the cursor moves past exactly what was returned.
    first = client.read_events(limit_name="f1", after=page.cursor, limit=1)
    assert kinds(list(first.events)) == ["slot.granted"]
    second = client.read_events(limit_name="f1", after=first.cursor, limit=1)
    assert kinds(list(second.events)) == ["slot.released"]


def test_since_filters_by_time(client: Client) -> None:
    client.create_limit("old", 1)
    client.create_limit("new", 1)
    new = client.read_events(limit_name="new").events[0]
    # Stored times are finer than a microsecond: start just before the event.
    since = new.timestamp - timedelta(microseconds=1)
    names = [e.limit_name for e in client.read_events(since=since, kind="limit").events]
    assert names == ["new"]
    assert client.read_events(since=datetime.now(UTC) + timedelta(hours=1)).events == ()


def test_expiry_and_reap_are_recorded(backend: Backend, client: Client) -> None:
    client.create_limit("short", 1)
    client.create_limit("crashy", 2)
    grant = client.acquire_slots(["short"], 1, holder_id="x", lease_seconds=10)
    assert isinstance(grant, SlotGrant)
    assert client.sweep_slots() == 0  # not yet run out
    backend.clock.advance(11)
    assert client.sweep_slots() == 1  # run out: reaped by the next sweep
    expired = [e for e in client.read_events(limit_name="short").events if e.kind[:5] == "lease"]
    assert kinds(expired) == ["lease.expired"] and expired[0].slots == 1

    run_id = str(uuid.uuid4())
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_HANG, run_id],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        # The holder writes its grant event within its flush interval.
        wait_for(
            lambda: list(client.read_events(run_id=run_id).events),
            lambda ev: "slot.granted" in kinds(ev),
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    # The holder is gone (same machine): the next sweep reaps its lease at once.
    def sweep_and_read() -> list[Event]:
        client.sweep_slots()
        return list(client.read_events(run_id=run_id).events)

    reaped = wait_for(sweep_and_read, lambda ev: "lease.reaped" in kinds(ev))
    assert kinds(reaped) == ["slot.granted", "lease.reaped"]
    assert reaped[1].limit_name == "crashy" and reaped[1].slots == 2
    assert "holder process is gone" in (reaped[1].detail or "")
    assert client.read_limit("crashy").active_slots == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"after": "bogus"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 10_001}, "limit")],
)
def test_bad_arguments_are_refused(client: Client, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(exceptions.ValidationError, match=message):
        client.read_events(**kwargs)  # type: ignore[arg-type]


def test_old_events_are_pruned_state_changes_are_kept(client: Client) -> None:
    store = getattr(client, "store", None)
    if store is None:
        pytest.skip("pruning is the server's own background work; checked embedded")
    run_id = str(uuid.uuid4())
    client.create_flow_run(id=run_id, name="a", flow_name="f", state=Running())
    client.create_limit("p", 1)
    assert store.events.prune_events(3600.0) == 0  # nothing that old
    assert store.events.prune_events(0.0) == 1  # the limit's creation
    assert kinds(list(client.read_events().events)) == ["state.RUNNING"]
