"""What HttpClient puts on the wire and reads back from it, without sending anything.

The server URLs of ``HEADWAY_API_URL`` split for the transport, records to
JSON and back (:func:`encode`, :func:`decode`, with a decoder per type built
once), batched writes cut into bodies the server takes, and an error answer
mapped back to the ``HeadwayError`` subclass the server named
(:func:`error_from_response`). :class:`~headway.client.http.HttpClient` sends
the requests; none of this needs httpx.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from headway import exceptions
from headway.api.operation import Op
from headway.core.models import to_jsonable
from headway.core.states import State, StateType

API_PREFIX = "/api/v1"

#: Batched writes are sent in chunks of at most this many records and about
#: this many bytes, well under the server's limit for batch routes.
BATCH_RECORDS = 2_000
BATCH_BYTES = 4 * 1024 * 1024

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class _Server:
    """One server of HEADWAY_API_URL, split for the transport."""

    url: str
    scheme: str
    host: str
    port: int | None
    #: The API's path prefix on this server (its base path, then /api/v1).
    path: str


def _server(part: str, configured: str) -> _Server:
    url = part.strip().rstrip("/")
    parts = urlsplit(url + API_PREFIX)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise exceptions.ConfigurationError(
            f"HEADWAY_API_URL must be http:// or https:// URLs (several separated by"
            f" commas), got {configured!r}"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise exceptions.ConfigurationError(f"HEADWAY_API_URL {configured!r}: {exc}") from None
    return _Server(url, parts.scheme, parts.hostname, port, parts.path)


#: How to read each operation's answer, built on first use.
_RETURNS: dict[str, Callable[[Any], Any]] = {}


def _returns(op: Op[Any, Any]) -> Callable[[Any], Any]:
    reader = _RETURNS.get(op.name)
    if reader is None:
        reader = _RETURNS[op.name] = _decoder_for(op.returns())
    return reader


# -- errors ------------------------------------------------------------------------
def error_from_response(status: int, content: bytes) -> exceptions.HeadwayError:
    """The ``HeadwayError`` a server error body names (the class the embedded client raises)."""
    detail: str = ""
    name: str | None = None
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or "")
        raw_name = body.get("error")
        name = raw_name if isinstance(raw_name, str) else None
    if not detail:
        detail = content[:200].decode("utf-8", "replace") or f"HTTP {status}"
    cls = exceptions.BY_NAME.get(name or "")
    if cls is None:
        if status in (401, 403):
            return exceptions.ConfigurationError(
                f"the headway server refused the request: {detail} (check HEADWAY_API_KEY)"
            )
        if status in (413, 422):
            return exceptions.ValidationError(detail)
        return exceptions.ServerError(f"the headway server answered {status}: {detail}")
    try:
        return cls(detail)
    except TypeError:  # a subclass with a richer constructor
        error = cls.__new__(cls)
        Exception.__init__(error, detail)
        return error


# -- records to and from JSON --------------------------------------------------------
def encode(value: Any) -> Any:
    """A record (dataclass, State, datetime, enum, ...) as JSON-ready values."""
    return to_jsonable(value)


def decode(cls: type[T], value: Any) -> T:
    """The record of type ``cls`` that :func:`encode` (or the server) wrote as ``value``."""
    return typing.cast(T, _decode(cls, value))


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    return _decoder_for(tp)(value)


#: A decoder per type, built once: walking type hints on every answer would cost
#: more than the request on the slot hot path.
_DECODERS: dict[Any, Callable[[Any], Any]] = {}


def _decoder_for(tp: Any) -> Callable[[Any], Any]:
    decoder = _DECODERS.get(tp)
    if decoder is None:
        built = _build_decoder(tp)

        def decoder(value: Any) -> Any:
            return None if value is None else built(value)

        _DECODERS[tp] = decoder
    return decoder


def _identity(value: Any) -> Any:
    return value


def _decode_state(value: Any) -> State:
    return State(
        StateType(value["type"]),
        value.get("name") or "",
        datetime.fromisoformat(value["timestamp"]),
        value.get("message"),
    )


def _build_decoder(tp: Any) -> Callable[[Any], Any]:
    if tp is Any or tp is object:
        return _identity
    if tp is State:
        return _decode_state
    if tp is datetime:
        return datetime.fromisoformat
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decoder_for(options[0]) if len(options) == 1 else _identity
    if origin in (tuple, list, set, frozenset):
        args = typing.get_args(tp)
        item = _decoder_for(args[0] if args else Any)
        return lambda value: origin(item(v) for v in value)
    if origin is dict:
        args = typing.get_args(tp)
        entry = _decoder_for(args[1] if len(args) == 2 else Any)
        return lambda value: {k: entry(v) for k, v in value.items()}
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp
        if dataclasses.is_dataclass(tp):
            return _dataclass_decoder(tp)
        if tp in (int, float, str, bool):
            return tp
    return _identity


def _dataclass_decoder(cls: type) -> Callable[[Any], Any]:
    # Field decoders are looked up on first use: a dataclass may refer to itself.
    fields: list[tuple[str, Callable[[Any], Any]]] | None = None

    def decode(value: Any) -> Any:
        nonlocal fields
        if fields is None:
            hints = _hints(cls)
            fields = [
                (f.name, _decoder_for(hints.get(f.name, Any)))
                for f in dataclasses.fields(cls)
                if f.init
            ]
        return cls(**{name: dec(value[name]) for name, dec in fields if name in value})

    return decode


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _batches(records: Sequence[Any]) -> Iterator[bytes]:
    """``{"records": [...]}`` bodies of at most BATCH_RECORDS records and about BATCH_BYTES."""
    chunk: list[bytes] = []
    size = 0
    for record in records:
        item = json.dumps(encode(record), separators=(",", ":")).encode()
        if chunk and (len(chunk) >= BATCH_RECORDS or size + len(item) > BATCH_BYTES):
            yield b'{"records":[' + b",".join(chunk) + b"]}"
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield b'{"records":[' + b",".join(chunk) + b"]}"
