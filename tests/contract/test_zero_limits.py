"""Limits of 0: a kill switch, on every backend.

A limit of 0 admits nothing. A request from code (``concurrency()``,
``rate_limit()``, a task's tag slots) is refused at once with
:class:`LimitClosed`, never queued, as Prefect refuses it; requests already
waiting when a limit drops to 0 are woken and refused the same way; holders
keep their slots. Runs held back by a pool, queue or deployment limit of 0 stay
scheduled (nothing is cancelled) and start once it is raised. ``explain_run``
says why.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from headway import flow, task
from headway.client.base import Client
from headway.concurrency import asyncio as hw_asyncio
from headway.concurrency.sync import concurrency, rate_limit
from headway.core.deployments import DeploymentSpec
from headway.core.states import AWAITING_CONCURRENCY_SLOT, StateType
from headway.exceptions import ConcurrencySlotAcquisitionError, LimitClosed
from helpers.waiting import wait_until


def test_a_limit_of_0_refuses_every_request_at_once(client: Client) -> None:
    client.create_limit("off", 0)
    client.create_limit("spare", 2)
    client.create_limit("rate-off", 0, slot_decay_per_second=1.0)
    # No wait however long the caller would wait: the request is not queued.
    with pytest.raises(LimitClosed, match="'off' is 0: nothing is admitted"):
        client.acquire_slots(["off", "spare"], 1, timeout=None)
    for strict in (False, True):
        with pytest.raises(ConcurrencySlotAcquisitionError, match="is 0"):
            with concurrency(["spare", "off"], timeout_seconds=30, strict=strict):
                pytest.fail("the block ran under a limit of 0")
    with pytest.raises(LimitClosed):
        with rate_limit("rate-off"):
            pytest.fail("the block ran under a limit of 0")

    async def in_asyncio() -> None:
        async with hw_asyncio.concurrency("off", timeout_seconds=30):
            pytest.fail("the block ran under a limit of 0")

    with pytest.raises(LimitClosed):
        asyncio.run(in_asyncio())
    # Nothing was queued or taken anywhere (all or nothing).
    for name in ("off", "spare"):
        limit = client.read_limit(name)
        assert (limit.active_slots, limit.waiters) == (0, 0)
    # Disabled, a limit of 0 applies to nobody; raised, it admits again.
    client.update_limit("off", active=False)
    with concurrency("off", timeout_seconds=5):
        pass
    client.update_limit("off", active=True, limit=1)
    with concurrency("off", timeout_seconds=5):
        assert client.read_limit("off").active_slots == 1


def test_waiters_are_refused_when_their_limit_drops_to_0(client: Client) -> None:
    client.create_limit("db", 1)
    held = client.acquire_slots("db", 1)
    assert held.granted and held.lease_id is not None
    outcome: list[BaseException | None] = []

    def wait_in_line() -> None:
        try:
            with concurrency("db"):  # no timeout: only the limit can end the wait
                outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_in_line, daemon=True)
    waiter.start()
    wait_until(lambda: client.read_limit("db").waiters == 1, "the second request queued")
    client.update_limit("db", limit=0)
    waiter.join(60)
    assert not waiter.is_alive()
    [error] = outcome
    assert isinstance(error, LimitClosed), error
    # The holder keeps its slot; the queue is empty; raising the limit admits again.
    limit = client.read_limit("db")
    assert (limit.active_slots, limit.waiters) == (1, 0)
    assert client.release_slots(held.lease_id)
    client.update_limit("db", limit=1)
    grant = client.acquire_slots("db", 1)
    assert grant.granted


def _deployment(client: Client, **fields: Any) -> str:
    spec = DeploymentSpec(
        flow_name="flow", name="d", entrypoint="/nowhere/flows.py:flow", work_pool="pool",
        **fields,
    )  # fmt: skip
    return client.apply_deployment(spec).full_name


def _claim(client: Client) -> list[str]:
    worker = client.register_worker("pool", "w")
    assert worker.id is not None
    return [c.run.id for c in client.claim_flow_runs(worker.id, pool="pool", limit=5)]


def test_a_pool_or_queue_limit_of_0_gives_out_no_runs(client: Client) -> None:
    pool = client.create_work_pool("pool", concurrency_limit=0)
    assert pool.concurrency_limit == 0
    name = _deployment(client)
    run = client.create_deployment_run(name)
    assert _claim(client) == []
    why = client.explain_run(run.id)
    assert why.waiting and "'pool:pool' is 0: nothing is admitted" in why.summary
    [blocker] = why.blockers
    assert blocker.closed and blocker.estimated_start is None and "is 0" in blocker.estimate
    pool_layer = client.explain_deployment(name).layers[0]
    assert (pool_layer.layer, pool_layer.limit) == ("work pool", 0)
    assert "is 0: nothing" in pool_layer.detail
    # The queue's limit of 0 holds it back in the same way once the pool's is raised.
    client.set_work_queue_concurrency_limit("pool", "default", 0)
    client.set_work_pool_concurrency_limit("pool", 1)
    assert _claim(client) == []
    assert client.read_work_pool("pool").queues[0].concurrency_limit == 0
    assert client.read_flow_run(run.id).state.type is StateType.SCHEDULED
    assert "'queue:pool/default' is 0" in client.explain_run(run.id).summary
    client.set_work_queue_concurrency_limit("pool", "default", None)
    assert _claim(client) == [run.id]


@pytest.mark.parametrize("strategy", ["ENQUEUE", "CANCEL_NEW", "CANCEL_IN_PROGRESS"])
def test_a_deployment_limit_set_to_0_holds_its_runs(client: Client, strategy: str) -> None:
    client.create_work_pool("pool")
    name = _deployment(client, concurrency_limit=1, collision_strategy=strategy)
    client.update_limit(f"deployment:{name}", limit=0)
    run = client.create_deployment_run(name)
    assert _claim(client) == []
    # Not cancelled, whatever the strategy: it waits for the limit to be raised.
    state = client.read_flow_run(run.id).state
    assert (state.type, state.name) == (StateType.SCHEDULED, AWAITING_CONCURRENCY_SLOT)
    why = client.explain_run(run.id)
    assert f"'deployment:{name}' is 0: nothing is admitted" in why.summary
    assert why.blockers[0].strategy.startswith("WAIT (the limit is 0")
    assert f"deployment {name!r}: limit 0" in "\n".join(why.details)
    layers = {layer.layer: layer for layer in client.explain_deployment(name).layers}
    assert layers["deployment"].limit == 0 and "is 0: nothing" in layers["deployment"].detail
    client.update_limit(f"deployment:{name}", limit=1)
    assert _claim(client) == [run.id]


def test_a_task_whose_tag_limit_is_0_fails_without_running(client: Client) -> None:
    client.create_limit("tag:frozen", 0)
    ran: list[str] = []

    @task(tags=["frozen"])
    def guarded() -> str:
        ran.append("guarded")
        return "ran"

    @flow
    def uses_it() -> Any:
        return guarded(return_state=True)

    state = uses_it()
    assert state.type is StateType.FAILED
    assert "the concurrency limit on tag 'frozen' is 0" in (state.message or "")
    assert ran == []
    limit = client.read_limit("tag:frozen")
    assert (limit.active_slots, limit.waiters) == (0, 0)
