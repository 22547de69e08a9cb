"""Every API route, built from its operation's declaration in :mod:`headway.api.operations`.

A route's path and method, its path parameters (``{name}``: one segment of at
most ``Op.segment`` characters; ``{name:path}``: the rest of the path), its
query and body models (named in :mod:`headway.api.schemas`), its status and
its response model (the declared return type) all come from the ``Op``. The
route calls the Orchestrator method of the operation's name with the
arguments :meth:`~headway.api.schemas.Body.to_args` gives, and answers its
result as JSON (wrapped as ``{answer: result}`` when the Op says so; 204 for
``None``). The few operations that need more than one call are served by a
function of :mod:`headway.server.routes.slots`, still from their declaration.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from headway.api import schemas
from headway.api.operation import Op, operations
from headway.api.operations import Client
from headway.core.limits import LimitDetail, SlotGrant, SlotWait
from headway.core.models import Limit
from headway.server.routes._common import NO_CONTENT, no_content, orchestrator, record_response
from headway.server.routes.slots import SPECIAL


class SlotAnswer(pydantic.BaseModel):
    """The answer to ``POST /slots/acquire``: a grant, or why the request still waits."""

    granted: bool
    grant: SlotGrant | None = None
    wait: SlotWait | None = None


#: The wire shape of operations whose answer is not their return type as JSON.
_RESPONSE_MODELS: dict[str, Any] = {
    "acquire_slots": SlotAnswer,
    "read_limit": Limit | LimitDetail,
}


@functools.cache
def api_routes(prefix: str) -> tuple[BaseRoute, ...]:
    """One route per declared operation under ``prefix``, in declaration order.

    Built once per process and shared by every app it serves: deriving each
    operation's models costs about 0.2 s of CPU, and a route keeps no state of
    its own (it finds the orchestrator in the state of the app that received
    the request). The test suite starts hundreds of servers in its processes.
    """
    router = APIRouter(prefix=prefix)
    for op in operations(Client):
        if op.route:
            _add_route(router, op)
    return tuple(router.routes)


def request_model(op: Op[Any, Any]) -> type[pydantic.BaseModel] | None:
    """The operation's body model, if it has one."""
    return None if op.body is None else typing.cast(Any, getattr(schemas, op.body))


def response_model(op: Op[Any, Any]) -> Any:
    """The type the OpenAPI document declares for the operation's success answer."""
    if op.name in _RESPONSE_MODELS:
        return _RESPONSE_MODELS[op.name]
    returns = op.returns()
    if returns is type(None):
        return None
    if op.answer is not None:
        title = "".join(part.title() for part in op.name.split("_")) + "Answer"
        fields: dict[str, Any] = {op.answer: (returns, ...)}
        return pydantic.create_model(title, **fields)
    return returns


def answer(op: Op[Any, Any], result: Any, status: int) -> Response:
    """The result of an operation as its HTTP answer."""
    if status == NO_CONTENT:
        return no_content()
    if op.answer is not None:
        result = {op.answer: result}
    return record_response(result, status)


def _add_route(router: APIRouter, op: Op[Any, Any]) -> None:
    params = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    for name in op.path_params:
        annotation: Any = str
        if name not in op.wide_params:
            annotation = Annotated[str, Path(min_length=1, max_length=op.segment)]
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
        )
    if op.query is not None:
        query = getattr(schemas, op.query)
        params.append(
            inspect.Parameter(
                "query", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[query, Query()]
            )
        )
    body = request_model(op)
    if body is not None:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body))
    model = response_model(op)
    status = NO_CONTENT if model is None else op.status
    special = SPECIAL.get(op.name)

    if special is not None:

        async def endpoint(request: Request, **values: Any) -> Response:
            async def disconnected() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass

            result = await special(request.app.state, values, disconnected)
            return answer(op, result, status)

    else:

        def endpoint(request: Request, **values: Any) -> Response:  # type: ignore[misc]
            args = {name: values[name] for name in op.path_params}
            if "query" in values:
                args.update(values["query"].to_args())
            if "body" in values:
                args.update(values["body"].to_args())
            result = getattr(orchestrator(request), op.name)(**args)
            return answer(op, result, status)

    endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = op.name
    router.add_api_route(
        op.path,
        endpoint,
        methods=[op.method],
        status_code=status,
        response_model=model,
        name=op.name,
        description=op.doc,
        tags=[op.tag] if op.tag else None,
    )
