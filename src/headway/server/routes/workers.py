"""Workers: register, heartbeat, claim runs (a held request); the scheduler's steps."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from headway.core.limits import ProcessInfo
from headway.server.routes._common import no_content, orchestrator, record_response
from headway.server.schemas import ClaimRuns, Heartbeat, WorkerRegister

router = APIRouter(tags=["workers"])

WorkerId = Annotated[str, Path(min_length=1, max_length=100)]
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


@router.post("/workers", status_code=201, response_model=None)
def register_worker(body: WorkerRegister, request: Request) -> Response:
    """Record a worker of a pool (its id is on the answer)."""
    worker = orchestrator(request).register_worker(
        body.pool, body.name, pid=body.pid, host=body.host
    )
    return record_response(worker, 201)


@router.get("/workers", response_model=None)
def list_workers(
    request: Request, pool: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    """Workers, most recently heard from first."""
    return record_response(orchestrator(request).list_workers(pool))


@router.delete("/workers/{worker_id}", status_code=204, response_model=None)
def remove_worker(worker_id: WorkerId, request: Request) -> Response:
    """Forget a worker that stopped cleanly."""
    orchestrator(request).remove_worker(worker_id)
    return no_content()


@router.post("/workers/{worker_id}/heartbeat", response_model=None)
def heartbeat_worker(worker_id: WorkerId, body: Heartbeat, request: Request) -> Response:
    """Renew the worker and its runs' leases; which runs it lost, which to cancel."""
    return record_response(orchestrator(request).heartbeat_worker(worker_id, body.run_ids))


@router.post("/workers/{worker_id}/claim", response_model=None)
async def claim_flow_runs(worker_id: WorkerId, body: ClaimRuns, request: Request) -> Response:
    """Claim up to ``limit`` due runs, holding the request up to ``wait`` seconds for one."""
    orch = orchestrator(request)
    process = None
    if body.process is not None:
        p = body.process
        process = ProcessInfo(p.pid, p.host, p.node, p.proc_start)
    wait = min(body.wait, CLAIM_HOLD_CAP_SECONDS)

    def claim() -> Any:
        return orch.claim_flow_runs(
            worker_id,
            pool=body.pool,
            queues=body.queues,
            deployments=body.deployments,
            limit=body.limit,
            wait=wait,
            process=process,
        )

    limiter = _claim_limiter() if wait > 0 else None
    claimed = await anyio.to_thread.run_sync(claim, limiter=limiter)
    return record_response(claimed)


@router.post("/scheduler/runs", response_model=None)
def schedule_runs(request: Request) -> Response:
    """Create the runs of every active schedule ahead of time (idempotent)."""
    return record_response({"created": orchestrator(request).schedule_runs()})


@router.post("/scheduler/late", response_model=None)
def mark_late_runs(request: Request) -> Response:
    """Mark deployment runs not started long after their time Late."""
    return record_response({"marked": orchestrator(request).mark_late_runs()})


@router.post("/scheduler/sweep", response_model=None)
def sweep_runs(request: Request) -> Response:
    """End runs whose worker stopped renewing their lease (CRASHED), freeing their slots."""
    return record_response({"ended": orchestrator(request).sweep_runs()})
