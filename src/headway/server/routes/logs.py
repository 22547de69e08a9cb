"""Log lines of runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from headway.server.routes._common import no_content, orchestrator, record_response
from headway.server.schemas import BIGINT_MAX, LogBatch

router = APIRouter(tags=["logs"])


@router.post("/logs/batch", status_code=204, response_model=None)
def write_logs(body: LogBatch, request: Request) -> Response:
    """Append log lines (one transaction per batch)."""
    orchestrator(request).write_logs([r.to_record() for r in body.records])
    return no_content()


@router.get("/flow_runs/{run_id}/logs", response_model=None)
def read_logs(
    request: Request,
    run_id: Annotated[str, Path(min_length=1, max_length=36)],
    after_id: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> Response:
    """Log lines of a flow run after ``after_id``, each with its id."""
    lines = orchestrator(request).read_logs(run_id, after_id=after_id)
    return record_response([{"id": i, "record": r} for i, r in lines])
