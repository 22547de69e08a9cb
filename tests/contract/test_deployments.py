"""Deployments, pools, queues, claims and collision strategies through the Client.

Each test runs on every backend (embedded and server, SQLite and PostgreSQL).
Runs are claimed and finished by the test itself (no subprocesses here; the
worker tests are in ``test_deployments_worker.py``), so the order in which
runs start under each limit and strategy is observed exactly.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headway import exceptions
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.models import FlowRun
from headway.core.states import AWAITING_CONCURRENCY_SLOT, LATE, Completed, StateType
from headway.deployments import ConcurrencyLimitConfig, run_deployment
from headway.flows import flow

SCHEMA = {"names": ["customer_id", "n"], "required": [], "var_keyword": False}
#: A claimed run's lease: the default. Expiry is tested by moving the store's
#: clock past it, so no test here races a lease on a slow machine.
LEASE = 30.0


def deploy(client: Client, name: str = "d", pool: str | None = "pool", **fields: Any) -> str:
    spec = DeploymentSpec(
        flow_name="flow",
        name=name,
        entrypoint="/nowhere/flows.py:flow",
        parameter_schema=SCHEMA,
        work_pool=pool,
        **fields,
    )
    return client.apply_deployment(spec).full_name


def register(client: Client, pool: str | None = "pool", name: str | None = None) -> str:
    worker = client.register_worker(pool or "", name or f"w-{uuid.uuid4().hex[:6]}")
    assert worker.id is not None
    return worker.id


def claim_ids(client: Client, worker: str, limit: int = 10, **kw: Any) -> list[str]:
    kw.setdefault("pool", "pool")
    return [c.run.id for c in client.claim_flow_runs(worker, limit=limit, **kw)]


def finish(client: Client, run_id: str) -> None:
    client.set_flow_run_state(run_id, Completed())


def state(client: Client, run_id: str) -> FlowRun:
    return client.read_flow_run(run_id)


# -- pools, queues, deployments ---------------------------------------------------------
def test_pools_and_queues(client: Client) -> None:
    pool = client.create_work_pool("pool")
    assert pool.concurrency_limit is None  # new pools are unlimited
    assert [q.name for q in pool.queues] == ["default"]
    client.create_work_queue("pool", "high", priority=5, concurrency_limit=2)
    pool = client.set_work_pool_concurrency_limit("pool", 3)
    assert pool.concurrency_limit == 3
    assert {q.name: q.concurrency_limit for q in pool.queues} == {"high": 2, "default": None}
    assert client.read_work_queue("pool", "high").priority == 5
    assert client.update_work_queue("pool", "high", priority=1, paused=True).paused
    assert client.set_work_pool_concurrency_limit("pool", None).concurrency_limit is None
    assert client.update_work_pool("pool", paused=True).paused
    assert [p.name for p in client.list_work_pools()] == ["pool"]
    with pytest.raises(exceptions.ObjectAlreadyExists):
        client.create_work_pool("pool")
    with pytest.raises(exceptions.ConflictError):
        client.delete_work_queue("pool", "default")
    client.delete_work_queue("pool", "high")
    client.delete_work_pool("pool")
    with pytest.raises(exceptions.ObjectNotFound):
        client.read_work_pool("pool")


def test_bad_limits_change_nothing(client: Client) -> None:
    # A pool's or queue's limit may be 0 (no runs start), as in Prefect; a
    # deployment's starts at 1, also as in Prefect.
    with pytest.raises(exceptions.ValidationError, match="at least 0"):
        client.create_work_pool("pool", concurrency_limit=-1)
    assert client.list_work_pools() == []
    client.create_work_pool("pool", concurrency_limit=2)
    full = deploy(client, concurrency_limit=1)
    with pytest.raises(exceptions.ValidationError, match="at least 0"):
        client.set_work_pool_concurrency_limit("pool", -1)
    with pytest.raises(exceptions.ValidationError, match="at least 0"):
        client.create_work_queue("pool", "q", concurrency_limit=-1)
    for bad in (0, -1):
        with pytest.raises(exceptions.ValidationError, match="at least 1"):
            client.set_deployment_concurrency_limit(full, bad)
    assert client.read_work_pool("pool").concurrency_limit == 2
    assert [q.name for q in client.read_work_pool("pool").queues] == ["default"]
    assert client.read_deployment(full).concurrency_limit == 1


def test_deployment_bad_input_changes_nothing(client: Client) -> None:
    with pytest.raises(exceptions.ObjectNotFound, match="no work pool named 'nope'"):
        deploy(client, pool="nope")
    client.create_work_pool("pool")
    with pytest.raises(exceptions.ValidationError, match="invalid cron"):
        deploy(client, schedules=({"cron": "61 * * * *"},))
    with pytest.raises(exceptions.ValidationError, match="unknown collision strategy"):
        deploy(client, concurrency_limit=1, collision_strategy="SOMETIMES")
    with pytest.raises(exceptions.ValidationError, match="unknown parameter"):
        deploy(client, concurrency_limit=1, concurrency_key="{region}")
    with pytest.raises(exceptions.ValidationError, match="unknown parameter"):
        deploy(client, parameters={"nope": 1})
    assert client.list_deployments() == []
    assert client.list_flow_runs() == []


def test_deployment_lifecycle(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, parameters={"n": 1}, schedules=({"interval": 3600},), tags=("a",))
    dep = client.read_deployment(full)
    assert (dep.full_name, dep.work_pool, dep.work_queue) == ("flow/d", "pool", "default")
    assert dep.concurrency_limit is None  # default: no limit, runs overlap
    assert dep.schedules[0].schedule["interval"] == 3600
    assert client.update_deployment(full, paused=True).paused
    assert not client.update_deployment(full, paused=False).paused
    dep = client.set_deployment_concurrency_limit(
        full, 2, collision_strategy="cancel_new", concurrency_key="{customer_id}"
    )
    assert (dep.concurrency_limit, dep.collision_strategy, dep.concurrency_key) == (
        2,
        "CANCEL_NEW",
        "{customer_id}",
    )
    assert client.set_deployment_concurrency_limit(full, None).concurrency_limit is None
    with pytest.raises(exceptions.ValidationError, match="unknown parameter"):
        client.create_deployment_run(full, parameters={"x": 1})
    run = client.create_deployment_run(full, parameters={"n": 7})
    assert run.parameters == {"n": 7} and run.state.type is StateType.SCHEDULED
    client.delete_deployment(full)
    with pytest.raises(exceptions.ObjectNotFound):
        client.read_deployment(full)
    assert state(client, run.id).state.type is StateType.CANCELLED


# -- claiming and collision strategies ---------------------------------------------------
def test_no_limit_runs_overlap(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    runs = [client.create_deployment_run(full).id for _ in range(3)]
    worker = register(client)
    assert sorted(claim_ids(client, worker)) == sorted(runs)
    assert {state(client, r).state.type for r in runs} == {StateType.PENDING}


def test_enqueue_runs_one_at_a_time_in_order(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1)
    runs = [client.create_deployment_run(full, parameters={"n": i}).id for i in range(4)]
    worker = register(client)
    started: list[str] = []
    for _ in range(4):
        got = claim_ids(client, worker)
        assert len(got) == 1  # never two at once
        started += got
        for waiting in set(runs) - set(started):
            run = state(client, waiting)
            assert (run.state.type, run.state.name) == (
                StateType.SCHEDULED,
                AWAITING_CONCURRENCY_SLOT,
            )
            assert "deployment:flow/d" in (run.state.message or "")
        assert claim_ids(client, worker) == []
        finish(client, got[0])
    assert started == runs  # FIFO
    assert client.read_limit("deployment:flow/d").active_slots == 0


def test_enqueue_priority_goes_first(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1)
    worker = register(client)
    first = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [first]
    low = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == []
    high = client.create_deployment_run(full, priority=5).id
    finish(client, first)
    assert claim_ids(client, worker) == [high]
    finish(client, high)
    assert claim_ids(client, worker) == [low]


def test_cancel_new(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1, collision_strategy="CANCEL_NEW")
    worker = register(client)
    first = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [first]
    second = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == []
    run = state(client, second)
    assert run.state.type is StateType.CANCELLED
    assert "deployment:flow/d" in (run.state.message or "")
    assert "CANCEL_NEW" in (run.state.message or "")
    assert state(client, first).state.type is StateType.PENDING


def test_cancel_in_progress(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1, collision_strategy="CANCEL_IN_PROGRESS")
    worker = register(client)
    old = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [old]
    new = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == []
    assert state(client, old).state.type is StateType.CANCELLING
    assert state(client, new).state.name == AWAITING_CONCURRENCY_SLOT
    beat = client.heartbeat_worker(worker, [old])
    assert beat.cancelling == (old,)
    newest = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == []
    # The newest wins: the run that waited before it is cancelled too.
    assert state(client, new).state.type is StateType.CANCELLED
    client.set_flow_run_state(old, Completed())  # it stopped (a run may finish first)
    assert claim_ids(client, worker) == [newest]


def test_concurrency_keys_limit_per_key_round_robin(client: Client) -> None:
    client.create_work_pool("pool", concurrency_limit=1)
    full = deploy(client, concurrency_limit=2, concurrency_key="{customer_id}")
    worker = register(client)
    a = [client.create_deployment_run(full, parameters={"customer_id": "a"}).id for _ in range(3)]
    b = client.create_deployment_run(full, parameters={"customer_id": "b"}).id
    order: list[str] = []
    for _ in range(4):
        got = claim_ids(client, worker)
        assert len(got) == 1  # the pool admits one at a time
        order += got
        finish(client, got[0])
    # FIFO would be a0 a1 a2 b; round-robin between keys serves b second.
    assert order == [a[0], b, a[1], a[2]]
    assert client.read_limit("deployment:flow/d:a").limit == 2
    assert client.read_limit("deployment:flow/d:b").active_slots == 0


def test_concurrency_keys_proceed_independently(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1, concurrency_key="{customer_id}")
    worker = register(client)
    a1 = client.create_deployment_run(full, parameters={"customer_id": "a"}).id
    a2 = client.create_deployment_run(full, parameters={"customer_id": "a"}).id
    b1 = client.create_deployment_run(full, parameters={"customer_id": "b"}).id
    assert sorted(claim_ids(client, worker)) == sorted([a1, b1])
    assert state(client, a2).state.name == AWAITING_CONCURRENCY_SLOT
    finish(client, a1)
    assert claim_ids(client, worker) == [a2]


def test_pool_and_queue_limits_with_priorities(client: Client) -> None:
    client.create_work_pool("pool", concurrency_limit=2)
    client.create_work_queue("pool", "urgent", priority=10)
    client.create_work_queue("pool", "bulk", priority=0, concurrency_limit=1)
    bulk = deploy(client, "bulk", work_queue="bulk")
    urgent = deploy(client, "urgent", work_queue="urgent")
    worker = register(client)
    b = [client.create_deployment_run(bulk).id for _ in range(3)]
    u = [client.create_deployment_run(urgent).id for _ in range(2)]
    # Queue priority first: both urgent runs, though the bulk ones are older.
    assert sorted(claim_ids(client, worker)) == sorted(u)
    assert claim_ids(client, worker) == []  # the pool is full
    finish(client, u[0])
    finish(client, u[1])
    # The bulk queue admits one at a time, whatever room the pool has.
    assert claim_ids(client, worker) == [b[0]]
    assert claim_ids(client, worker) == []
    finish(client, b[0])
    assert claim_ids(client, worker) == [b[1]]
    pool = client.read_work_pool("pool")
    assert (pool.running, pool.waiting) == (1, 1)


def test_paused_pool_and_queue_claim_nothing(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    run = client.create_deployment_run(full).id
    worker = register(client)
    client.update_work_pool("pool", paused=True)
    assert claim_ids(client, worker) == []
    client.update_work_pool("pool", paused=False)
    client.update_work_queue("pool", "default", paused=True)
    assert claim_ids(client, worker) == []
    client.update_work_queue("pool", "default", paused=False)
    assert claim_ids(client, worker) == [run]


def test_two_claimers_never_take_the_same_run(client: Client, backend: Any) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    runs = {client.create_deployment_run(full).id for _ in range(40)}
    clients = [backend.new_client() for _ in range(2)]
    workers = [register(c) for c in clients]
    taken: list[list[str]] = [[], []]

    def claim(i: int) -> None:
        while True:
            got = claim_ids(clients[i], workers[i], limit=3)
            if not got:
                return
            taken[i].extend(got)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert not set(taken[0]) & set(taken[1])
    assert set(taken[0]) | set(taken[1]) == runs
    assert len(taken[0]) + len(taken[1]) == len(runs)


def test_expired_lease_crashes_the_run_and_frees_its_slot(client: Client, backend: Any) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1)
    worker = register(client)
    first = client.create_deployment_run(full).id
    second = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [first]
    # Within its lease the run is kept, and its slot with it.
    backend.clock.advance(LEASE - 5)
    client.sweep_runs()
    assert claim_ids(client, register(client)) == []
    assert state(client, first).state.type is StateType.PENDING
    # The worker went silent: once the lease is past, the run is CRASHED, its slot back.
    backend.clock.advance(10)
    client.sweep_runs()
    assert claim_ids(client, register(client)) == [second]
    run = state(client, first)
    assert run.state.type is StateType.CRASHED
    assert "lease" in (run.state.message or "")
    beat = client.heartbeat_worker(worker, [first])
    assert beat.lost == (first,)


def test_heartbeat_keeps_a_run(client: Client, backend: Any) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    worker = register(client)
    run = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [run]
    # Four heartbeats, each 0.6 lease after the last: 2.4 leases in all, never lost.
    for _ in range(4):
        beat = client.heartbeat_worker(worker, [run])
        assert beat.lost == () and beat.cancelling == ()
        backend.clock.advance(LEASE * 0.6)
        client.sweep_runs()
    assert state(client, run).state.type is StateType.PENDING


def test_cancel(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    worker = register(client)
    waiting = client.create_deployment_run(
        full, scheduled_time=datetime.now(UTC) + timedelta(hours=1)
    )
    assert client.cancel_flow_run(waiting.id).state.type is StateType.CANCELLED
    claimed = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [claimed]
    assert client.cancel_flow_run(claimed).state.type is StateType.CANCELLING
    assert client.heartbeat_worker(worker, [claimed]).cancelling == (claimed,)
    with pytest.raises(exceptions.ConflictError):
        client.cancel_flow_run(waiting.id)
    with pytest.raises(exceptions.ObjectNotFound):
        client.cancel_flow_run(str(uuid.uuid4()))


def test_claim_wait_is_woken_by_a_release(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1)
    worker = register(client)
    first = client.create_deployment_run(full).id
    second = client.create_deployment_run(full).id
    assert claim_ids(client, worker) == [first]
    got: list[str] = []

    def claim_until_one() -> None:
        # A wake-up may end a wait early and empty-handed: the caller asks again.
        while not got:
            got.extend(claim_ids(client, worker, wait=20.0))

    waiter = threading.Thread(target=claim_until_one, daemon=True)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and got == []  # held: nothing can start yet
    finish(client, first)
    waiter.join(10.0)
    assert got == [second]


# -- the scheduler ---------------------------------------------------------------------
def test_scheduler_is_idempotent_across_restarts(client: Client, backend: Any) -> None:
    client.create_work_pool("pool")
    full = deploy(client, schedules=({"interval": 60}, {"cron": "*/5 * * * *"}))
    client.schedule_runs()
    first = {r.expected_start_time for r in client.list_flow_runs(limit=1000, deployment=full)}
    assert first and len(first) == len(client.list_flow_runs(limit=1000, deployment=full))
    # Another scheduler, and this one "restarted": the same runs, no duplicates.
    other = backend.new_client()
    try:
        other.schedule_runs()
    finally:
        other.close()
    client.schedule_runs()
    runs = client.list_flow_runs(limit=1000, deployment=full)
    times = [r.expected_start_time for r in runs]
    assert len(times) == len(set(times))  # no run twice
    # The same runs. (A later pass may add the next time, and only that: when
    # the clock passed one of the schedule's times meanwhile, as under load.)
    last = max(t for t in first if t is not None)
    assert {t for t in times if t is not None and t <= last} == first
    # Pausing removes the runs created ahead (those whose time has not come;
    # one that came due meanwhile stays); resuming creates them again, once.
    client.update_deployment(full, paused=True)
    paused_at = datetime.fromtimestamp(backend.clock.now(), UTC)
    left = client.list_flow_runs(limit=1000, deployment=full)
    assert all(r.expected_start_time and r.expected_start_time <= paused_at for r in left), left
    client.update_deployment(full, paused=False)
    again = client.list_flow_runs(limit=1000, deployment=full)
    assert {r.expected_start_time for r in again} >= first
    assert len(again) == len({r.expected_start_time for r in again})


def test_late_runs_are_marked_late(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    old = client.create_deployment_run(
        full, scheduled_time=datetime.now(UTC) - timedelta(minutes=5)
    )
    fresh = client.create_deployment_run(full)
    assert client.mark_late_runs() == 1
    assert (state(client, old.id).state.name, state(client, fresh.id).state.name) == (
        LATE,
        "Scheduled",
    )
    # A late run is still claimed like any other.
    assert old.id in claim_ids(client, register(client))


# -- the SDK: flow.deploy(), run_deployment, ConcurrencyLimitConfig ---------------------


@flow
def etl(customer_id: str, n: int = 1) -> int:
    """Load one customer's data."""
    return n


def test_flow_deploy_and_run_deployment(client: Client) -> None:
    client.create_work_pool("pool")
    dep = etl.deploy(
        name="nightly",
        work_pool_name="pool",
        cron="0 3 * * *",
        timezone="Europe/Paris",
        parameters={"customer_id": "acme"},
        concurrency_limit=ConcurrencyLimitConfig(2, "CANCEL_NEW", "{customer_id}"),
        client=client,
    )
    assert dep.full_name == "etl/nightly"
    assert dep.entrypoint is not None and dep.entrypoint.endswith("test_deployments.py:etl")
    assert (dep.concurrency_limit, dep.collision_strategy, dep.concurrency_key) == (
        2,
        "CANCEL_NEW",
        "{customer_id}",
    )
    assert dep.schedules[0].schedule == {"cron": "0 3 * * *", "timezone": "Europe/Paris"}
    assert dep.description == "Load one customer's data."
    run = run_deployment("etl/nightly", parameters={"n": 3}, timeout=0, client=client)
    assert run.parameters == {"customer_id": "acme", "n": 3}
    assert run.state.type is StateType.SCHEDULED and run.deployment == "etl/nightly"
    # Not started by anyone: a bounded wait returns the run as it is.
    assert run_deployment("etl/nightly", timeout=0.2, client=client).state.type is (
        StateType.SCHEDULED
    )
    with pytest.raises(exceptions.ValidationError, match="unknown parameter"):
        run_deployment("etl/nightly", parameters={"m": 1}, timeout=0, client=client)
    with pytest.raises(exceptions.ValidationError, match="missing required"):
        etl.deploy(name="bare", work_pool_name="pool", interval=60, client=client)
    with pytest.raises(exceptions.ObjectNotFound, match="no work pool named 'nope'"):
        etl.deploy(name="x", work_pool_name="nope", client=client)


def test_concurrency_limit_config_is_validated() -> None:
    assert ConcurrencyLimitConfig(1).collision_strategy == "ENQUEUE"
    assert ConcurrencyLimitConfig(1, "cancel_in_progress").collision_strategy == (
        "CANCEL_IN_PROGRESS"
    )
    for bad in (0, -1):
        with pytest.raises(exceptions.ValidationError, match="at least 1"):
            ConcurrencyLimitConfig(bad)
    with pytest.raises(exceptions.ValidationError, match="unknown collision strategy"):
        ConcurrencyLimitConfig(1, "SOMETIMES")  # type: ignore[arg-type]
    with pytest.raises(exceptions.ValidationError, match="names no parameter"):
        ConcurrencyLimitConfig(1, concurrency_key="static")


def test_scheduler_horizon_and_late_threshold_are_settings(headway_home: Any) -> None:
    from headway.client.base import _make_client
    from headway.settings import get_settings

    def client_with(**env: str) -> Client:
        home = {"HEADWAY_HOME": str(headway_home)}
        return _make_client(get_settings({**home, **env}))

    default = client_with()
    default.create_work_pool("pool")
    # Every 15 minutes: a 1-hour horizon (the default) holds 4 or 5 runs, 20 minutes 1 or 2.
    # (Applying a deployment schedules its runs at once, with the horizon of who applies it.)
    near = client_with(HEADWAY_SCHEDULER_HORIZON_SECONDS="1200")
    every_15 = deploy(near, name="every-15", schedules=({"interval": 900},))
    near.schedule_runs()
    assert 1 <= len(near.list_flow_runs(limit=100, deployment=every_15)) <= 2
    default.schedule_runs()
    assert 4 <= len(default.list_flow_runs(limit=100, deployment=every_15)) <= 5
    # A run 5 minutes overdue is Late after the default 15 s, not with a 10-minute threshold.
    once = deploy(default, name="once")
    old = default.create_deployment_run(
        once, scheduled_time=datetime.now(UTC) - timedelta(minutes=5)
    )
    patient = client_with(HEADWAY_LATE_AFTER_SECONDS="600")
    assert patient.mark_late_runs() == 0
    assert state(default, old.id).state.name == "Scheduled"
    assert default.mark_late_runs() == 1
    assert state(default, old.id).state.name == LATE
    for c in (default, near, patient):
        c.close()
