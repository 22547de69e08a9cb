"""Every record has a stable ``id`` and ``created``/``updated`` times, on every backend.

``updated`` moves with every change of the record and with nothing else: the
test moves the store's clock between steps, so each change shows as a later
time, exactly, and a read or a mere use (slots taken and given back, a
worker's heartbeat) shows as none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.states import Running

if TYPE_CHECKING:
    from conftest import Backend

#: Between two steps: well within a claimed run's lease (30 s), so none expires.
STEP = 5.0


def _later(before: datetime | None, after: datetime | None) -> bool:
    assert before is not None and after is not None
    return after - before >= timedelta(seconds=STEP)


def test_a_limit_keeps_its_id_and_records_when_its_settings_change(
    client: Client, backend: Backend
) -> None:
    made = client.create_limit("db", 2)
    assert made.id is not None and len(made.id) == 36
    assert made.updated == made.created
    backend.clock.advance(STEP)
    # Used, not changed: slots taken and given back leave ``updated`` alone.
    grant = client.acquire_slots("db", 1)
    assert grant.granted and grant.lease_id is not None
    client.release_slots(grant.lease_id)
    read = client.read_limit("db")
    assert (read.id, read.updated) == (made.id, made.updated)
    for change in (
        lambda: client.update_limit("db", limit=3),
        lambda: client.update_limit("db", active=False),
        lambda: client.reset_limit("db"),
    ):
        before = client.read_limit("db").updated
        backend.clock.advance(STEP)
        change()
        after = client.read_limit("db")
        assert _later(before, after.updated)
        assert (after.id, after.created) == (made.id, made.created)
    # Every limit has its own id, also those of other scopes.
    client.create_limit("tag:io", 1)
    client.create_work_pool("p", concurrency_limit=1)
    ids = [lim.id for lim in client.list_limits()]
    assert len(ids) == 3 and len(set(ids)) == 3 and made.id in ids
    assert client.inspect_limit("db").limit.id == made.id


def test_a_work_pool_and_its_queues_record_their_changes(client: Client, backend: Backend) -> None:
    made = client.create_work_pool("p")
    assert made.id is not None and len(made.id) == 36
    assert made.updated == made.created
    [queue] = made.queues
    assert queue.updated == queue.created
    for change in (
        lambda: client.update_work_pool("p", paused=True),
        lambda: client.set_work_pool_concurrency_limit("p", 0),
        lambda: client.set_work_pool_concurrency_limit("p", None),
    ):
        before = client.read_work_pool("p").updated
        backend.clock.advance(STEP)
        change()
        after = client.read_work_pool("p")
        assert _later(before, after.updated)
        assert (after.id, after.created) == (made.id, made.created)
    assert [p.id for p in client.list_work_pools()] == [made.id]
    for change in (
        lambda: client.update_work_queue("p", "default", priority=5),
        lambda: client.update_work_queue("p", "default", paused=True),
        lambda: client.set_work_queue_concurrency_limit("p", "default", 2),
    ):
        before = client.read_work_queue("p", "default").updated
        backend.clock.advance(STEP)
        change()
        after = client.read_work_queue("p", "default")
        assert _later(before, after.updated)
        assert (after.id, after.created) == (queue.id, queue.created)


def test_a_flow_run_records_its_changes_but_not_heartbeats(
    client: Client, backend: Backend
) -> None:
    client.create_work_pool("p")
    spec = DeploymentSpec(flow_name="f", name="d", entrypoint="/nowhere/f.py:f", work_pool="p")
    dep = client.apply_deployment(spec)
    assert dep.updated == dep.created
    run = client.create_deployment_run("f/d")
    assert run.updated == run.created
    worker = client.register_worker("p", "w")
    assert worker.id is not None
    backend.clock.advance(STEP)
    assert [c.run.id for c in client.claim_flow_runs(worker.id, pool="p", limit=1)] == [run.id]
    claimed_at = client.read_flow_run(run.id).updated
    assert _later(run.updated, claimed_at)
    backend.clock.advance(STEP)
    client.heartbeat_worker(worker.id, [run.id])
    assert client.read_flow_run(run.id).updated == claimed_at
    client.set_flow_run_state(run.id, Running())
    running = client.read_flow_run(run.id)
    assert _later(claimed_at, running.updated)
    assert (running.id, running.created) == (run.id, run.created)
    listed = {r.id: r for r in client.list_flow_runs()}
    assert listed[run.id].updated == running.updated
    # A deployment changed records it too.
    backend.clock.advance(STEP)
    paused = client.update_deployment("f/d", paused=True)
    assert _later(dep.updated, paused.updated) and paused.id == dep.id
