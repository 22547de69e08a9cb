"""Flow runs, task runs and their states."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from headway.core.states import StateType
from headway.server.routes._common import no_content, orchestrator, record_response
from headway.server.schemas import INT_MAX, FlowRunCreate, SetState, TaskRunBatch

router = APIRouter(tags=["runs"])

RunIdPath = Annotated[str, Path(min_length=1, max_length=36)]


@router.post("/flow_runs", status_code=201, response_model=None)
def create_flow_run(body: FlowRunCreate, request: Request) -> Response:
    """Record a new flow run in its first state."""
    run = orchestrator(request).create_flow_run(
        id=body.id,
        name=body.name,
        flow_name=body.flow_name,
        state=body.state.to_state(),
        parameters=body.parameters,
        deployment=body.deployment,
        parent_task_run_id=body.parent_task_run_id,
        tags=tuple(body.tags),
        pid=body.pid,
        host=body.host,
    )
    return record_response(run, 201)


@router.get("/flow_runs", response_model=None)
def list_flow_runs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 20,
    offset: Annotated[int, Query(ge=0, le=INT_MAX)] = 0,
    state: Annotated[list[StateType] | None, Query()] = None,
    deployment: Annotated[str | None, Query(max_length=401)] = None,
    flow_name: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Flow runs, newest first, filtered by state, deployment or flow."""
    runs = orchestrator(request).list_flow_runs(
        limit=limit, offset=offset, states=state, deployment=deployment, flow_name=flow_name
    )
    return record_response(runs)


@router.get("/flow_runs/{run_id}", response_model=None)
def read_flow_run(run_id: RunIdPath, request: Request, with_task_runs: bool = False) -> Response:
    """One flow run (404 if unknown), optionally with its task runs."""
    return record_response(
        orchestrator(request).read_flow_run(run_id, with_task_runs=with_task_runs)
    )


@router.post("/flow_runs/{run_id}/state", response_model=None)
def set_flow_run_state(run_id: RunIdPath, body: SetState, request: Request) -> Response:
    """Move a flow run to a new state (409 if the state machine forbids it)."""
    expect = None if body.expect is None else frozenset(body.expect)
    run = orchestrator(request).set_flow_run_state(run_id, body.state.to_state(), expect=expect)
    return record_response(run)


@router.get("/flow_runs/{run_id}/task_runs", response_model=None)
def read_task_runs(run_id: RunIdPath, request: Request) -> Response:
    """The task runs of a flow run, in creation order."""
    return record_response(orchestrator(request).read_task_runs(run_id))


@router.post("/task_runs/batch", status_code=204, response_model=None)
def record_task_runs(body: TaskRunBatch, request: Request) -> Response:
    """Record task runs and the states they went through (one transaction per batch)."""
    orchestrator(request).record_task_runs([r.to_record() for r in body.records])
    return no_content()


@router.get("/task_runs/{task_run_id}", response_model=None)
def read_task_run(task_run_id: RunIdPath, request: Request) -> Response:
    """One task run (404 if unknown)."""
    return record_response(orchestrator(request).read_task_run(task_run_id))


@router.get("/runs/{run_id}/states", response_model=None)
def read_states(run_id: RunIdPath, request: Request) -> Response:
    """The state history of a flow or task run, oldest first."""
    return record_response(orchestrator(request).read_states(run_id))
