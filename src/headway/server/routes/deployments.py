"""Work pools, their queues, deployments and their runs.

Deployment names are ``<flow>/<name>``: they are matched whole in the path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from headway.core.deployments import DeploymentSpec
from headway.server.routes._common import no_content, orchestrator, record_response
from headway.server.schemas import (
    CancelRun,
    ConcurrencyLimitSet,
    DeploymentLimitSet,
    DeploymentRunCreate,
    DeploymentSpecIn,
    PausedUpdate,
    WorkPoolCreate,
    WorkQueueCreate,
    WorkQueueUpdate,
    aware,
)

router = APIRouter()
Segment = Annotated[str, Path(min_length=1, max_length=500)]


# -- work pools -------------------------------------------------------------------------
@router.post("/work_pools", status_code=201, response_model=None, tags=["work pools"])
def create_work_pool(body: WorkPoolCreate, request: Request) -> Response:
    """Create a pool with its ``default`` queue (409 if the name is taken)."""
    pool = orchestrator(request).create_work_pool(
        body.name, concurrency_limit=body.concurrency_limit, description=body.description
    )
    return record_response(pool, 201)


@router.get("/work_pools", response_model=None, tags=["work pools"])
def list_work_pools(request: Request) -> Response:
    """Every pool, by name."""
    return record_response(orchestrator(request).list_work_pools())


@router.get("/work_pools/{name}", response_model=None, tags=["work pools"])
def read_work_pool(name: Segment, request: Request) -> Response:
    """One pool with its queues, limit and run counts."""
    return record_response(orchestrator(request).read_work_pool(name))


@router.patch("/work_pools/{name}", response_model=None, tags=["work pools"])
def update_work_pool(name: Segment, body: PausedUpdate, request: Request) -> Response:
    """Pause or resume a pool."""
    return record_response(orchestrator(request).update_work_pool(name, paused=body.paused))


@router.put("/work_pools/{name}/concurrency_limit", response_model=None, tags=["work pools"])
def set_work_pool_concurrency_limit(
    name: Segment, body: ConcurrencyLimitSet, request: Request
) -> Response:
    """Set (null: clear) the pool's limit on its PENDING and RUNNING runs."""
    pool = orchestrator(request).set_work_pool_concurrency_limit(name, body.limit)
    return record_response(pool)


@router.delete("/work_pools/{name}", status_code=204, response_model=None, tags=["work pools"])
def delete_work_pool(name: Segment, request: Request) -> Response:
    """Delete a pool (409 while deployments use it)."""
    orchestrator(request).delete_work_pool(name)
    return no_content()


# -- work queues ------------------------------------------------------------------------
@router.post("/work_pools/{pool}/queues", status_code=201, response_model=None, tags=["queues"])
def create_work_queue(pool: Segment, body: WorkQueueCreate, request: Request) -> Response:
    """Create a queue in a pool (higher priority is claimed first)."""
    queue = orchestrator(request).create_work_queue(
        pool, body.name, priority=body.priority, concurrency_limit=body.concurrency_limit
    )
    return record_response(queue, 201)


@router.get("/work_queues", response_model=None, tags=["queues"])
def list_work_queues(
    request: Request, pool: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    """The queues of one pool, or of every pool."""
    return record_response(orchestrator(request).list_work_queues(pool))


@router.get("/work_pools/{pool}/queues/{name}", response_model=None, tags=["queues"])
def read_work_queue(pool: Segment, name: Segment, request: Request) -> Response:
    """One queue."""
    return record_response(orchestrator(request).read_work_queue(pool, name))


@router.patch("/work_pools/{pool}/queues/{name}", response_model=None, tags=["queues"])
def update_work_queue(
    pool: Segment, name: Segment, body: WorkQueueUpdate, request: Request
) -> Response:
    """Change a queue's priority; pause or resume it."""
    queue = orchestrator(request).update_work_queue(
        pool, name, priority=body.priority, paused=body.paused
    )
    return record_response(queue)


@router.put(
    "/work_pools/{pool}/queues/{name}/concurrency_limit", response_model=None, tags=["queues"]
)
def set_work_queue_concurrency_limit(
    pool: Segment, name: Segment, body: ConcurrencyLimitSet, request: Request
) -> Response:
    """Set (null: clear) the queue's limit on its PENDING and RUNNING runs."""
    queue = orchestrator(request).set_work_queue_concurrency_limit(pool, name, body.limit)
    return record_response(queue)


@router.delete(
    "/work_pools/{pool}/queues/{name}", status_code=204, response_model=None, tags=["queues"]
)
def delete_work_queue(pool: Segment, name: Segment, request: Request) -> Response:
    """Delete a queue (not ``default``; 409 while deployments use it)."""
    orchestrator(request).delete_work_queue(pool, name)
    return no_content()


# -- deployments ------------------------------------------------------------------------
@router.post("/deployments", response_model=None, tags=["deployments"])
def apply_deployment(body: DeploymentSpecIn, request: Request) -> Response:
    """Create or update the deployment ``<flow_name>/<name>``."""
    spec = DeploymentSpec(
        flow_name=body.flow_name,
        name=body.name,
        entrypoint=body.entrypoint,
        parameters=body.parameters,
        parameter_schema=body.parameter_schema,
        tags=tuple(body.tags),
        work_pool=body.work_pool,
        work_queue=body.work_queue,
        paused=body.paused,
        schedules=tuple(body.schedules),
        concurrency_limit=body.concurrency_limit,
        collision_strategy=body.collision_strategy,
        concurrency_key=body.concurrency_key,
        description=body.description,
        code_repository=body.code_repository,
        code_ref=body.code_ref,
    )
    return record_response(orchestrator(request).apply_deployment(spec))


@router.get("/deployments", response_model=None, tags=["deployments"])
def list_deployments(
    request: Request,
    work_pool: Annotated[str | None, Query(max_length=500)] = None,
    flow_name: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Deployments by name."""
    found = orchestrator(request).list_deployments(work_pool=work_pool, flow_name=flow_name)
    return record_response(found)


@router.put("/deployments/{name:path}/concurrency_limit", response_model=None, tags=["deployments"])
def set_deployment_concurrency_limit(
    name: str, body: DeploymentLimitSet, request: Request
) -> Response:
    """Set (null: clear) the deployment's limit, collision strategy and key template."""
    deployment = orchestrator(request).set_deployment_concurrency_limit(
        name,
        body.limit,
        collision_strategy=body.collision_strategy,
        concurrency_key=body.concurrency_key,
    )
    return record_response(deployment)


@router.post(
    "/deployments/{name:path}/runs", status_code=201, response_model=None, tags=["deployments"]
)
def create_deployment_run(name: str, body: DeploymentRunCreate, request: Request) -> Response:
    """A new SCHEDULED run of a deployment, due at ``scheduled_time`` (default: now)."""
    run = orchestrator(request).create_deployment_run(
        name,
        parameters=body.parameters,
        scheduled_time=None if body.scheduled_time is None else aware(body.scheduled_time),
        priority=body.priority,
    )
    return record_response(run, 201)


@router.get("/deployments/{name:path}", response_model=None, tags=["deployments"])
def read_deployment(name: str, request: Request) -> Response:
    """One deployment by ``<flow>/<name>``."""
    return record_response(orchestrator(request).read_deployment(name))


@router.patch("/deployments/{name:path}", response_model=None, tags=["deployments"])
def update_deployment(name: str, body: PausedUpdate, request: Request) -> Response:
    """Pause (schedules stop) or resume a deployment."""
    return record_response(orchestrator(request).update_deployment(name, paused=body.paused))


@router.delete(
    "/deployments/{name:path}", status_code=204, response_model=None, tags=["deployments"]
)
def delete_deployment(name: str, request: Request) -> Response:
    """Delete a deployment; its runs not started yet are cancelled."""
    orchestrator(request).delete_deployment(name)
    return no_content()


@router.post("/flow_runs/{run_id}/cancel", response_model=None, tags=["runs"])
def cancel_flow_run(
    run_id: Annotated[str, Path(min_length=1, max_length=36)], body: CancelRun, request: Request
) -> Response:
    """Cancel a run: at once if not started, else CANCELLING until its worker stops it."""
    return record_response(orchestrator(request).cancel_flow_run(run_id, body.message))
