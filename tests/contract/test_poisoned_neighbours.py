"""One bad lease or run never stops a background pass from handling the others.

A lease or run that the API would refuse (or that a damaged database holds) is
planted directly in the store beside good ones; after the clock is moved past
every lease, a sweep must still reap the good leases and end the good runs, and
report the bad record (``sweep.skipped``) instead of failing as a whole.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from headway._process import current_process
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.limits import SlotGrant
from headway.core.states import Running, Scheduled, StateType
from headway.server.services import BackgroundServices
from headway.settings import Settings
from headway.store.store import Store

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    """The store behind ``backend`` (the server's own, or one on the same database)."""
    if backend.server is not None:
        yield backend.server.app.state.store
        return
    opened = Store.open(backend.settings, clock=backend.clock)
    try:
        yield opened
    finally:
        opened.close()


def _plant_lease(store: Store, name: str, pid: Any, expires: float, slots: Any = 1) -> str:
    """A lease row of this node with ``pid``, counted in its limit's active slots."""
    lease_id = uuid.uuid4().hex
    me = current_process()
    with store.db.write() as tx:
        tx.execute(
            "INSERT INTO leases (lease_id, limit_name, slots, holder_kind, holder_id, pid, host,"
            " proc_start, created, expires, node) VALUES (:id, :name, :slots, 'code', NULL, :pid,"
            " :host, :start, :now, :expires, :node)",
            {
                "id": lease_id,
                "name": name,
                "slots": slots,
                "pid": pid,
                "host": me.host,
                "start": 5,
                "now": store.clock.now(),
                "expires": expires,
                "node": me.node,
            },
        )
        tx.execute("UPDATE limits SET active_slots = active_slots + 1 WHERE name = :n", {"n": name})
    return lease_id


def _holders(store: Store, name: str) -> set[str]:
    with store.db.read() as tx:
        rows = tx.execute("SELECT lease_id FROM leases WHERE limit_name = :n", {"n": name})
    return {r[0] for r in rows}


def test_a_bad_lease_leaves_the_others_reaped(
    backend: Backend, client: Client, store: Store
) -> None:
    client.create_limit("db", 10)
    client.create_limit("other", 10)
    good = []
    for name in ("db", "db", "other"):
        grant = client.acquire_slots([name], 1, lease_seconds=5)
        assert isinstance(grant, SlotGrant)
        good.append(grant.lease_id)
    now = backend.clock.now()
    # A pid no kernel hands out, on this node (PostgreSQL's column holds 32 bits).
    huge = 2**31 - 1 if backend.is_postgres else 2**62
    bad = [_plant_lease(store, "db", huge, now + 5)]
    lingering: list[str] = []
    if not backend.is_postgres:
        # SQLite keeps whatever it is given: a pid that is not a number at all,
        # on a lease that is not due yet, so its pid must be judged...
        lingering.append(_plant_lease(store, "other", "not-a-pid", now + 3600))
        # ...and, on a limit of its own, an expired lease whose slots are not a
        # number: reaping it fails, so that limit's sweep does.
        client.create_limit("broken", 10)
        _plant_lease(store, "broken", 1, now + 5, slots="many")

    backend.clock.advance(10)
    reaped = client.sweep_slots()

    assert reaped == len(good) + len(bad)
    assert _holders(store, "db") == set()
    assert _holders(store, "other") == set(lingering)
    # The limits still grant, lazy reaping included.
    for name in ("db", "other"):
        assert isinstance(client.acquire_slots([name], 1), SlotGrant)
    if lingering:
        skipped = client.read_events(kind="sweep.skipped").events
        assert sorted((e.limit_name or "") for e in skipped) == ["broken", "other"]
        assert any(lingering[0] in (e.detail or "") for e in skipped)
        # The next sweep still reaps the others (the broken limit swept on its own).
        again = client.acquire_slots(["db"], 1, lease_seconds=5)
        assert isinstance(again, SlotGrant)
        backend.clock.advance(10)
        assert client.sweep_slots() >= 1
        assert again.lease_id not in _holders(store, "db")


def _running_run(client: Client) -> str:
    run_id = str(uuid.uuid4())
    client.create_flow_run(id=run_id, name=run_id[:8], flow_name="f", state=Scheduled())
    client.set_flow_run_state(run_id, Running())
    return run_id


def test_a_bad_run_leaves_the_others_crashed(
    backend: Backend, client: Client, store: Store
) -> None:
    good = [_running_run(client) for _ in range(3)]
    bad = _running_run(client)
    with store.db.write() as tx:
        tx.execute("UPDATE flow_runs SET lease_expires = :at", {"at": backend.clock.now() + 5})
        # A state no version of headway writes (a damaged row, or a newer schema).
        tx.execute("UPDATE flow_runs SET state_type = 'BOGUS' WHERE id = :id", {"id": bad})

    backend.clock.advance(10)
    assert client.sweep_runs() == len(good)

    for run_id in good:
        assert client.read_flow_run(run_id).state.type is StateType.CRASHED
    skipped = client.read_events(kind="sweep.skipped").events
    assert [e.run_id for e in skipped] == [bad]
    # Skipped, not retried at the head of every later sweep.
    assert client.sweep_runs() == 0


class _FailingLeases:
    """An orchestrator whose lease sweep fails: the run sweep must run anyway."""

    def __init__(self) -> None:
        self.runs_swept = 0

    def sweep_slots(self) -> int:
        raise RuntimeError("lease sweep broke")

    def sweep_runs(self) -> int:
        self.runs_swept += 1
        return 0


class _FailingRuns(_FailingLeases):
    def __init__(self) -> None:
        super().__init__()
        self.leases_swept = 0

    def sweep_slots(self) -> int:
        self.leases_swept += 1
        return 0

    def sweep_runs(self) -> int:
        raise RuntimeError("run sweep broke")


def test_lease_and_run_sweeps_fail_independently() -> None:
    failing_leases, failing_runs = _FailingLeases(), _FailingRuns()
    for fake in (failing_leases, failing_runs):
        services = BackgroundServices(fake, Settings())  # type: ignore[arg-type]
        asyncio.run(services.sweep_once())
    assert failing_leases.runs_swept == 1
    assert failing_runs.leases_swept == 1


def test_a_bad_event_does_not_hold_back_the_others(backend: Backend, store: Store) -> None:
    now = backend.clock.now()
    store.events.buffer_rows([(now, "test.good", None, "a", None, None, "first")])
    # A kind is required: the store refuses this row whatever else is in the batch.
    store.events.buffer_rows([(now, None, None, "a", None, None, "bad")])  # type: ignore[list-item]
    store.events.buffer_rows([(now, "test.good", None, "a", None, None, "second")])
    store.events.flush_events()
    written = store.events.read_events(kind="test.", limit=10).events
    assert [e.detail for e in written] == ["first", "second"]
    store.events.flush_events()  # nothing left to retry


def test_a_bad_run_does_not_stop_claims_or_heartbeats(
    backend: Backend, client: Client, store: Store
) -> None:
    # Claims and heartbeats end expired runs first: a run that cannot be ended
    # must not make every claim and heartbeat of every worker fail.
    client.create_work_pool("pool")
    full = client.apply_deployment(
        DeploymentSpec(
            flow_name="flow", name="d", entrypoint="/nowhere/flows.py:flow", work_pool="pool"
        )
    ).full_name
    bad = _running_run(client)
    with store.db.write() as tx:
        tx.execute(
            "UPDATE flow_runs SET lease_expires = :at, state_type = 'BOGUS' WHERE id = :id",
            {"at": backend.clock.now() - 1, "id": bad},
        )
    due = client.create_deployment_run(full).id
    worker = client.register_worker("pool", "w1").id
    assert worker is not None
    assert [c.run.id for c in client.claim_flow_runs(worker, pool="pool", limit=5)] == [due]
    assert client.heartbeat_worker(worker, [due]).lost == ()


def test_the_servers_own_sweep_reaps_and_crashes_beside_poison(server_backend: Backend) -> None:
    # The pass the server runs every few seconds, run once here after moving its clock.
    backend, client = server_backend, server_backend.client
    store: Store = backend.server.app.state.store
    client.create_limit("db", 10)
    grant = client.acquire_slots(["db"], 1, lease_seconds=5)
    assert isinstance(grant, SlotGrant)
    huge = 2**31 - 1 if backend.is_postgres else 2**62
    _plant_lease(store, "db", huge, backend.clock.now() + 3600)
    good, bad = _running_run(client), _running_run(client)
    with store.db.write() as tx:
        tx.execute("UPDATE flow_runs SET lease_expires = :at", {"at": backend.clock.now() + 5})
        tx.execute("UPDATE flow_runs SET state_type = 'BOGUS' WHERE id = :id", {"id": bad})

    backend.clock.advance(10)
    services = backend.server.app.state.services
    asyncio.run(services.sweep_once())

    assert grant.lease_id not in _holders(store, "db")
    assert client.read_flow_run(good).state.type is StateType.CRASHED
