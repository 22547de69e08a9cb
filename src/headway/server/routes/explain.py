"""Explanations, events, the status screen and limit counters (all read-only GETs).

Explanations live under ``/explain/`` so a deployment's ``<flow>/<name>`` (which
holds a ``/``) never meets the deployment routes' own paths.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from headway.server.routes._common import orchestrator, record_response
from headway.store.events import MAX_EVENTS

router = APIRouter(tags=["explain"])


@router.get("/explain/runs/{run_id}", response_model=None)
def explain_run(
    run_id: Annotated[str, Path(min_length=1, max_length=100)], request: Request
) -> Response:
    """Why a flow or task run waits, waited, or is not limited (404 if unknown)."""
    return record_response(orchestrator(request).explain_run(run_id))


@router.get("/explain/deployments/{name:path}", response_model=None)
def explain_deployment(name: str, request: Request) -> Response:
    """A deployment's concurrency policy, layer by layer (404 if unknown)."""
    return record_response(orchestrator(request).explain_deployment(name))


@router.get("/events", response_model=None)
def read_events(
    request: Request,
    run_id: Annotated[str | None, Query(max_length=100)] = None,
    limit_name: Annotated[str | None, Query(max_length=1_000)] = None,
    since: datetime | None = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 100,
) -> Response:
    """Recorded events in time order; ``after`` (a page's cursor) returns later ones only."""
    page = orchestrator(request).read_events(
        run_id=run_id, limit_name=limit_name, since=since, kind=kind, after=after, limit=limit
    )
    return record_response(page)


@router.get("/status", response_model=None)
def status(request: Request) -> Response:
    """Runs by state, busiest limits, waiting runs, workers seen recently."""
    return record_response(orchestrator(request).status())


@router.get("/limit_stats", response_model=None)
def limit_stats(
    request: Request, prefix: Annotated[str | None, Query(max_length=1_000)] = None
) -> Response:
    """Limits with their counters: grants, denials, expiries, hold and wait totals."""
    return record_response(orchestrator(request).limit_stats(prefix=prefix))
