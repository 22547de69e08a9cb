"""Limits of every scope: create, read, list, update, delete, reset, inspect.

Names may contain ``/`` and ``:`` (``deployment:etl/nightly``): they travel
percent-encoded in the path and are matched whole.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from headway.server.routes._common import no_content, orchestrator, record_response
from headway.server.schemas import LimitCreate, LimitUpdate

router = APIRouter(tags=["limits"])


@router.post("/limits", status_code=201, response_model=None)
def create_limit(body: LimitCreate, request: Request) -> Response:
    """Create a limit (409 if the name is taken)."""
    limit = orchestrator(request).create_limit(
        body.name,
        body.limit,
        active=body.active,
        slot_decay_per_second=body.slot_decay_per_second,
        active_slots=body.active_slots,
    )
    return record_response(limit, 201)


@router.get("/limits", response_model=None)
def list_limits(
    request: Request, prefix: Annotated[str | None, Query(max_length=1_000)] = None
) -> Response:
    """Every limit by name (those starting with ``prefix``)."""
    return record_response(orchestrator(request).list_limits(prefix=prefix))


@router.get("/limits/{name:path}", response_model=None)
def read_limit(name: str, request: Request, detail: bool = False) -> Response:
    """One limit; with ``detail=true`` also its holders and waiters (``inspect``)."""
    orch = orchestrator(request)
    if detail:
        return record_response(orch.inspect_limit(name))
    return record_response(orch.read_limit(name))


@router.patch("/limits/{name:path}", response_model=None)
def update_limit(name: str, body: LimitUpdate, request: Request) -> Response:
    """Change a limit live; holders keep their slots."""
    limit = orchestrator(request).update_limit(
        name,
        limit=body.limit,
        active=body.active,
        slot_decay_per_second=body.slot_decay_per_second,
        active_slots=body.active_slots,
    )
    return record_response(limit)


@router.delete("/limits/{name:path}", status_code=204, response_model=None)
def delete_limit(name: str, request: Request, force: bool = False) -> Response:
    """Delete a limit (409 while it has holders, unless ``force``)."""
    orchestrator(request).delete_limit(name, force=force)
    return no_content()


@router.post("/limits/{name:path}/reset", response_model=None)
def reset_limit(name: str, request: Request) -> Response:
    """Free every slot of a limit; its holders lose their leases."""
    return record_response(orchestrator(request).reset_limit(name))
