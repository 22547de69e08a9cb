"""Taking and giving back slots: acquire (a held request), release, renew, cancel, sweep.

These routes are the documented contract of the slot API. In a running server
the hot three (acquire, release, renew) are answered by
:class:`headway.server.fastpath.SlotFastPath` with the very same functions
below, before FastAPI's routing; the routes here serve any request it hands
on (invalid input, so that every 422 has one shape) and define the OpenAPI
schema.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from headway.core.limits import ProcessInfo, SlotGrant, SlotWait
from headway.orchestrator import Orchestrator
from headway.server.routes._common import no_content, orchestrator, record_response
from headway.server.schemas import AcquireSlots, LeaseRef, RenewLeases, WaiterRef
from headway.server.waiting import LONG_POLL_CAP_SECONDS, HeldRequests

router = APIRouter(tags=["slots"])


def slot_answer(result: SlotGrant | SlotWait) -> dict[str, Any]:
    """``{"granted": true, "grant": ...}`` or ``{"granted": false, "wait": ...}``."""
    if isinstance(result, SlotGrant):
        return {"granted": True, "grant": result}
    return {"granted": False, "wait": result}


async def acquire(
    orch: Orchestrator,
    held: HeldRequests,
    body: AcquireSlots,
    disconnected: Callable[[], Awaitable[Any]],
) -> SlotGrant | SlotWait:
    """One acquire request: a single attempt, or a request held until granted or timed out."""
    process = None
    if body.process is not None:
        process = ProcessInfo(
            body.process.pid, body.process.host, body.process.node, body.process.proc_start
        )
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
        return await held.run(
            lambda: orch.acquire_slots(
                body.names, body.slots, timeout=0, waiter_id=body.waiter_id, **options
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
    return result


def release(orch: Orchestrator, body: LeaseRef) -> dict[str, Any]:
    return {"intact": orch.release_slots(body.lease_id)}


def renew(orch: Orchestrator, body: RenewLeases) -> dict[str, Any]:
    return {"lost": orch.renew_leases(body.lease_ids, body.lease_seconds)}


@router.post("/slots/acquire", response_model=None)
async def acquire_slots(body: AcquireSlots, request: Request) -> Response:
    """Take slots of every named limit, all or nothing, holding the request while it waits.

    ``timeout`` 0 is one attempt. Otherwise the request is answered the moment
    the slots are granted, or with ``granted: false`` after ``timeout`` seconds
    (at most the server's long-poll cap); ask again with the same
    ``waiter_id`` to keep the place in the queue. Without a ``waiter_id``, an
    ungranted request leaves nothing queued.
    """

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    result = await acquire(orchestrator(request), request.app.state.held, body, disconnected)
    return record_response(slot_answer(result))


@router.post("/slots/release", response_model=None)
async def release_slots(body: LeaseRef, request: Request) -> Response:
    """Give a lease's slots back; ``intact`` is false when it had been reaped."""
    orch = orchestrator(request)
    answer = await request.app.state.held.run(lambda: release(orch, body), urgent=True)
    return record_response(answer)


@router.post("/slots/renew", response_model=None)
async def renew_leases(body: RenewLeases, request: Request) -> Response:
    """Extend leases from now; ``lost`` lists those that were reaped."""
    orch = orchestrator(request)
    answer = await request.app.state.held.run(lambda: renew(orch, body), urgent=True)
    return record_response(answer)


@router.post("/slots/cancel", status_code=204, response_model=None)
async def cancel_slot_wait(body: WaiterRef, request: Request) -> Response:
    """Take a waiting request out of every queue; a request held for it returns."""
    # Marked first (on the loop), so a held request woken by the cancel stops
    # instead of queuing again.
    held: HeldRequests = request.app.state.held
    held.cancelled(body.waiter_id)
    orch = orchestrator(request)
    await held.run(lambda: orch.cancel_slot_wait(body.waiter_id))
    return no_content()


@router.post("/slots/sweep", response_model=None)
def sweep_slots(request: Request) -> Response:
    """Reap expired leases and waiters now; how many leases were reaped."""
    return record_response({"reaped": orchestrator(request).sweep_slots()})
