"""What every router uses: the Orchestrator of the app, and JSON answers of records."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from starlette.responses import Response

from headway.core.models import to_jsonable
from headway.orchestrator import Orchestrator


def orchestrator(request: Request) -> Orchestrator:
    """The Orchestrator the app serves."""
    orch: Orchestrator = request.app.state.orchestrator
    return orch


def json_text(value: Any) -> str:
    """A record (or list of records) as strict JSON: never NaN or Infinity.

    Inputs with non-finite numbers are refused, so none should be stored; one
    written before that (or by hand) is answered as null rather than as text
    a strict JSON parser rejects.
    """
    data = to_jsonable(value)
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def record_response(value: Any, status_code: int = 200) -> Response:
    """A record (or list of records) as a JSON answer, encoded once, without re-validation."""
    return Response(json_text(value), status_code=status_code, media_type="application/json")


NO_CONTENT = 204


def no_content() -> Response:
    """An empty success answer."""
    return Response(status_code=NO_CONTENT)
