"""The slot hot path at the ASGI level: acquire, release and renew without FastAPI's routing.

A slot pair through the server is two requests, and the store's share of each
is a fraction of a millisecond; FastAPI's per-request machinery (routing,
dependency solving, a Request object, response validation) cost more than the
work. This middleware answers the three hot routes itself, with the same
pydantic models (parsed from the raw body in one call), the same functions as
the routes in :mod:`headway.server.routes.slots`, and the same error shape.
Input the models reject is handed on to FastAPI untouched, so every 422 comes
from one place. It sits inside the API-key and body-size middlewares, which
therefore guard it too.
"""

from __future__ import annotations

from typing import Any

import pydantic

from headway.api.operation import Op
from headway.api.operations import Client
from headway.exceptions import HeadwayError
from headway.server.api_routes import request_model
from headway.server.errors import headway_error_answer
from headway.server.middleware import ASGIApp, Message, Receive, Scope, Send, send_error
from headway.server.routes._common import json_text
from headway.server.routes.slots import SPECIAL, Special

_JSON_HEADERS = [(b"content-type", b"application/json")]
#: The operations answered here.
HOT: tuple[Op[Any, Any], ...] = (Client.acquire_slots, Client.release_slots, Client.renew_leases)


class SlotFastPath:
    """Serves ``POST {prefix}/slots/acquire|release|renew``; everything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self._handlers: dict[str, tuple[Op[Any, Any], type[pydantic.BaseModel], Special]] = {}
        for op in HOT:
            model = request_model(op)
            assert op.method == "POST" and model is not None and not op.path_params
            self._handlers[prefix + op.path] = (op, model, SPECIAL[op.name])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._handlers.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        op, model, handler = route
        body = await _read_body(receive)
        try:
            request = model.model_validate_json(body)
        except pydantic.ValidationError:
            # FastAPI reads the same body and answers with the one 422 shape.
            await self.app(scope, _replay(body, receive), send)
            return

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            answer = await handler(scope["app"].state, {"body": request}, disconnected)
            if op.answer is not None:
                answer = {op.answer: answer}
        except HeadwayError as exc:
            await send_error(send, *headway_error_answer(exc, scope["path"]))
            return
        data = json_text(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
