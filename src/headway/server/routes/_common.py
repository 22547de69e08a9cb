"""What every router uses: the Orchestrator of the app, and JSON answers of records."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.responses import Response

from headway.core.models import to_jsonable
from headway.orchestrator import Orchestrator


def orchestrator(request: Request) -> Orchestrator:
    """The Orchestrator the app serves."""
    orch: Orchestrator = request.app.state.orchestrator
    return orch


def record_response(value: Any, status_code: int = 200) -> Response:
    """A record (or list of records) as a JSON answer, encoded once, without re-validation."""
    body = json.dumps(to_jsonable(value), separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json")


NO_CONTENT = 204


def no_content() -> Response:
    """An empty success answer."""
    return Response(status_code=NO_CONTENT)
