"""Errors to HTTP answers, in one place.

Every error body is ``{"detail": <message>, "error": <class name>}``. A
``HeadwayError`` answers with its own ``http_status`` and class name, so the
HttpClient raises the very same class again; invalid input answers 422 as
``ValidationError``; anything unexpected answers 500 with a fixed message (the
traceback goes to the server's log, never to the client).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from headway.exceptions import HeadwayError

logger = logging.getLogger("headway.server")


def error_response(status: int, detail: str, error: str, headers: Any = None) -> JSONResponse:
    """The one shape of every error the server sends."""
    return JSONResponse({"detail": detail, "error": error}, status_code=status, headers=headers)


def headway_error_answer(exc: HeadwayError, path: str) -> tuple[int, str, str]:
    """The status, detail and error name a ``HeadwayError`` answers with (logged when 5xx)."""
    status = exc.http_status
    if status >= 500:
        logger.warning("request failed: %s", exc, extra={"action": "request", "path": path})
    return status, str(exc) or type(exc).__name__, type(exc).__name__


async def _headway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HeadwayError)
    return error_response(*headway_error_answer(exc, request.url.path))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, describe_validation_errors(exc.errors()), "ValidationError")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    try:
        name = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        name = "HTTPError"
    return error_response(exc.status_code, str(exc.detail), name, getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "unexpected error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"action": "request"},
    )
    return error_response(500, "internal server error (see the server's log)", "ServerError")


def describe_validation_errors(errors: Any) -> str:
    """Pydantic's error list as one readable line: ``body.state.type: Input should be ...``."""
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(list(errors)) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one mapping of errors to answers on ``app``, and document it."""
    app.add_exception_handler(HeadwayError, _headway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _document_errors(app)


#: The one error body, as the OpenAPI document declares it.
ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["detail", "error"],
    "properties": {
        "detail": {"type": "string", "title": "Detail"},
        "error": {"type": "string", "title": "Error"},
    },
}
#: The errors any API call may answer with (400 and 413 only where a body is sent).
COMMON_ERRORS = {
    "400": "Malformed JSON body",
    "401": "Missing or wrong API key",
    "404": "Unknown run, limit, pool, queue, deployment or worker",
    "409": "Already exists, or refused in the current state",
    "413": "Request body too large",
    "422": "Invalid input",
    "503": "The store cannot be reached",
}


def _document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document tell the truth about error answers.

    FastAPI documents a 422 body of its own shape; the server answers every
    error as ``{"detail", "error"}`` (see :func:`error_response`), with the
    statuses of :data:`COMMON_ERRORS`. Clients and API fuzzers read the spec.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for fastapi_own in ("HTTPValidationError", "ValidationError"):
            schemas.pop(fastapi_own, None)
        schemas["Error"] = ERROR_SCHEMA
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in spec.get("paths", {}).items():
            if path == "/health":
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in COMMON_ERRORS.items():
                    if status in ("400", "413") and "requestBody" not in operation:
                        continue
                    responses[status] = {"description": description, "content": content}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
