"""The routes that need more than one Orchestrator call: held requests and urgent calls.

Every other route is built from its declaration alone (:mod:`headway.server.api_routes`).
These are built from their declarations too (path, method, request model,
OpenAPI), but are served by a function here: an acquire is a request held until
granted or timed out; releases and renewals take the slot threads' urgent lane;
a cancel also stops a request this server holds; a claim is held on threads of
its own; a limit read with ``detail=true`` is an inspect. In a running server
the hot three (acquire, release, renew) are answered by
:class:`headway.server.fastpath.SlotFastPath` with the very same functions,
before FastAPI's routing.

Each function takes the app's state, the route's parsed values (``body``,
``query`` and the path parameters by name) and an awaitable that completes
when the client hangs up; it returns the answer's value.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from headway.core.limits import ProcessInfo, SlotGrant, SlotWait, WakeTarget
from headway.core.states import Scheduled, StateType
from headway.exceptions import HeadwayError
from headway.orchestrator import Orchestrator
from headway.server.waiting import LONG_POLL_CAP_SECONDS, HeldRequests

#: ``special(app.state, values, disconnected)``: the answer's value.
Special = Callable[[Any, dict[str, Any], Callable[[], Awaitable[Any]]], Awaitable[Any]]
#: The longest a claim request is held waiting for a due run.
CLAIM_HOLD_CAP_SECONDS = 30.0
# Held claims wait on threads of their own, so waiting workers never take the
# threads every other route runs on. Workers are few; this bounds them anyway.
_claim_threads: anyio.CapacityLimiter | None = None


def _claim_limiter() -> anyio.CapacityLimiter:
    global _claim_threads
    if _claim_threads is None:
        _claim_threads = anyio.CapacityLimiter(16)
    return _claim_threads


def slot_answer(result: SlotGrant | SlotWait) -> dict[str, Any]:
    """``{"granted": true, "grant": ...}`` or ``{"granted": false, "wait": ...}``."""
    if isinstance(result, SlotGrant):
        return {"granted": True, "grant": result}
    return {"granted": False, "wait": result}


async def acquire(
    state: Any, values: dict[str, Any], disconnected: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    """One acquire request: a single attempt, or a request held until granted or timed out."""
    orch: Orchestrator = state.orchestrator
    held: HeldRequests = state.held
    body = values["body"]
    process = None if body.process is None else body.process.to_domain()
    owned = body.waiter_id is None
    hold_for = LONG_POLL_CAP_SECONDS if body.timeout is None else body.timeout
    hold_for = min(hold_for, LONG_POLL_CAP_SECONDS)
    options: dict[str, Any] = {
        "mode": body.mode,
        "priority": body.priority,
        "holder_kind": body.holder_kind,
        "holder_id": body.holder_id,
        "process": process,
        "lease_seconds": body.lease_seconds,
        "strict": body.strict,
    }
    if hold_for <= 0:
        # One attempt; queued only when the caller named its waiter.
        return slot_answer(
            await held.run(
                lambda: orch.acquire_slots(
                    body.names, body.slots, timeout=0, waiter_id=body.waiter_id, **options
                )
            )
        )
    waiter_id = body.waiter_id or uuid.uuid4().hex

    def attempt() -> SlotGrant | SlotWait:
        return orch.acquire_slots(body.names, body.slots, timeout=0, waiter_id=waiter_id, **options)

    def cancel() -> None:
        orch.cancel_slot_wait(waiter_id)

    granted = False
    try:
        result = await held.hold(
            attempt, waiter_id, hold_for, disconnected, cancel, turn=tuple(sorted(set(body.names)))
        )
        granted = isinstance(result, SlotGrant)
    finally:
        if owned and not granted:
            await held.run(cancel)
    return slot_answer(result)


async def release(state: Any, values: dict[str, Any], disconnected: Any) -> bool:
    """Give a lease's slots back, on the urgent lane."""
    orch: Orchestrator = state.orchestrator
    lease_id = values["body"].lease_id
    intact: bool = await state.held.run(lambda: orch.release_slots(lease_id), urgent=True)
    return intact


async def renew(state: Any, values: dict[str, Any], disconnected: Any) -> list[str]:
    """Extend leases from now, on the urgent lane."""
    orch: Orchestrator = state.orchestrator
    body = values["body"]
    lost: list[str] = await state.held.run(
        lambda: orch.renew_leases(body.lease_ids, body.lease_seconds), urgent=True
    )
    return lost


async def cancel(state: Any, values: dict[str, Any], disconnected: Any) -> None:
    """Take a waiting request out of every queue; a request held for it returns."""
    # Marked first (on the loop), so a held request woken by the cancel stops
    # instead of queuing again.
    held: HeldRequests = state.held
    waiter_id = values["body"].waiter_id
    held.cancelled(waiter_id)
    orch: Orchestrator = state.orchestrator
    await held.run(lambda: orch.cancel_slot_wait(waiter_id))


#: A claimed run is handed back only while it has not started.
HANDED_BACK_FROM = frozenset({StateType.PENDING})


async def claim(state: Any, values: dict[str, Any], disconnected: Any) -> Any:
    """Claim due runs, holding the request up to ``wait`` seconds (capped) for one."""
    orch: Orchestrator = state.orchestrator
    body = values["body"]
    process: ProcessInfo | None = None if body.process is None else body.process.to_domain()
    wait = min(body.wait, CLAIM_HOLD_CAP_SECONDS)

    def claim() -> Any:
        return orch.claim_flow_runs(
            values["worker_id"],
            pool=body.pool,
            queues=body.queues,
            deployments=body.deployments,
            limit=body.limit,
            wait=wait,
            process=process,
        )

    if wait <= 0:
        return await anyio.to_thread.run_sync(claim)
    hung_up = False

    async def watch() -> None:
        nonlocal hung_up
        await disconnected()
        hung_up = True
        # The worker will never hear this claim's answer (it died, or gave up):
        # the held claim ends now instead of taking a run for it.
        orch.wakeups.notify([WakeTarget(f"claim:{values['worker_id']}", None, "", 0)])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        try:
            claimed = await anyio.to_thread.run_sync(claim, limiter=_claim_limiter())
        finally:
            tasks.cancel_scope.cancel()
    if hung_up and claimed:
        # Taken in the moment before the claim ended: back to the queue, for
        # another worker (its lease would otherwise run out and crash it).
        await anyio.to_thread.run_sync(_hand_back, orch, claimed)
        return []
    return claimed


def _hand_back(orch: Orchestrator, claimed: Any) -> None:
    for item in claimed:
        with contextlib.suppress(HeadwayError):
            orch.set_flow_run_state(
                item.run.id,
                Scheduled(message="handed back: its worker hung up before the claim's answer"),
                expect=HANDED_BACK_FROM,
            )


async def read_limit(state: Any, values: dict[str, Any], disconnected: Any) -> Any:
    """One limit; with ``detail=true`` its holders and waiters too (``inspect_limit``)."""
    orch: Orchestrator = state.orchestrator
    name: str = values["name"]
    read = orch.inspect_limit if values["query"].detail else orch.read_limit
    return await anyio.to_thread.run_sync(read, name)


#: The operations served by a function of their own, by name.
SPECIAL: dict[str, Special] = {
    "acquire_slots": acquire,
    "release_slots": release,
    "renew_leases": renew,
    "cancel_slot_wait": cancel,
    "claim_flow_runs": claim,
    "read_limit": read_limit,
}
