"""One HTTP operation, declared once: the ``Op`` descriptor and its decorators.

An operation is a method of the :class:`~headway.api.operations.Client`
protocol, decorated with its HTTP method and path (``@post("/limits", ...)``).
The method's signature is the operation's Python signature, for every caller
and for mypy; the decorator records how it travels:

- path parameters are named in the path (``{name}``: one segment;
  ``{name:path}``: the rest of the path, slashes included);
- the other parameters travel as the JSON body when the operation has a
  ``body`` model, else as query parameters;
- the answer is the method's return value as JSON (``answer="key"``:
  wrapped as ``{"key": value}``), or no content for ``None``.

``HttpClient`` inherits the protocol, so each operation's method there is this
descriptor's :meth:`Op.__get__`, which sends the request. The server builds
its route from the same ``Op`` (:mod:`headway.server.api_routes`) and calls the
Orchestrator method of the same name, which implements the protocol.

Request models are named, not imported: they are pydantic models
(:mod:`headway.api.schemas`) and neither the embedded path nor the HTTP client
loads pydantic.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload
from urllib.parse import quote

from headway.core.models import to_jsonable

P = ParamSpec("P")
R = TypeVar("R")

_PATH_PARAM = re.compile(r"{(\w+)(:path)?}")


class Declared(Exception):
    """The body of a declared operation: never run (the ``Op`` descriptor stands for it).

    Each declaration ends with ``raise Declared``: an empty body would make the
    method abstract to mypy in ``HttpClient``, which inherits the protocol.
    """


class Sender(Protocol):
    """What an ``Op`` needs of the object it is read from (``HttpClient``)."""

    def call_operation(self, op: Op[Any, Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """Send ``op`` with these arguments; its decoded answer."""
        ...


@dataclasses.dataclass(frozen=True)
class Request:
    """One call of an operation as it travels: path, query parameters and JSON body."""

    path: str
    params: list[tuple[str, Any]] | None
    body: dict[str, Any] | None


class Op(Generic[P, R]):
    """An operation: its Python signature (from the declared method) and how it travels."""

    def __init__(
        self,
        declared: Callable[Concatenate[Any, P], R],
        method: str,
        path: str,
        *,
        body: str | None = None,
        query: str | None = None,
        status: int = 200,
        answer: str | None = None,
        idempotent: bool | None = None,
        segment: int = 500,
        aliases: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        spread: str | None = None,
        route: bool = True,
        tag: str = "",
    ) -> None:
        self.declared = declared
        self.name = declared.__name__
        self.doc = inspect.getdoc(declared) or ""
        self.method = method
        #: The route's path, as the server declares it (``{name:path}`` kept).
        self.path = path
        #: The request model (a name in ``headway.api.schemas``), for a JSON body.
        self.body = body
        #: The query model (a name in ``headway.api.schemas``), for query parameters.
        self.query = query
        self.status = status
        self.answer = answer
        self.idempotent = method in ("GET", "PUT", "DELETE") if idempotent is None else idempotent
        #: Longest value of a one-segment path parameter (``{name}``).
        self.segment = segment
        #: Wire names of parameters that travel under another name.
        self.aliases = dict(aliases or {})
        #: Query parameters always sent (an operation served by another's route).
        self.params = dict(params or {})
        #: The parameter whose JSON is the whole body (``apply_deployment(spec)``).
        self.spread = spread
        #: False: another operation's route serves it (:attr:`params` tell them apart).
        self.route = route
        self.tag = tag
        self.path_params = [m.group(1) for m in _PATH_PARAM.finditer(path)]
        self.wide_params = {m.group(1) for m in _PATH_PARAM.finditer(path) if m.group(2)}
        self._template = _PATH_PARAM.sub(r"{\1}", path)
        # The signature, read once: binding a call is on the slot hot path (renewals),
        # and inspect.Signature.bind costs more than building the request.
        signature = list(inspect.signature(declared).parameters.values())[1:]
        self._names = tuple(p.name for p in signature)
        self._positional = sum(p.kind is p.POSITIONAL_OR_KEYWORD for p in signature)
        self._defaults = {p.name: p.default for p in signature if p.default is not p.empty}
        self._required = tuple(p.name for p in signature if p.default is p.empty)

    def __repr__(self) -> str:
        return f"<Op {self.name}: {self.method} {self.path}>"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Op[P, R]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Callable[P, R]: ...
    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        sender = typing.cast(Sender, obj)

        def call(*args: Any, **kwargs: Any) -> Any:
            return sender.call_operation(self, args, kwargs)

        call.__name__ = self.name
        call.__doc__ = self.doc
        return call

    # -- the client's side: a call as a request ----------------------------------------
    def arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults filled in (TypeError as for a method)."""
        if len(args) > self._positional:
            raise TypeError(f"{self.name}() takes {self._positional} positional arguments")
        given = dict(zip(self._names, args, strict=False))
        for name, value in kwargs.items():
            if name not in self._defaults and name not in self._required:
                raise TypeError(f"{self.name}() got an unexpected keyword argument {name!r}")
            if name in given:
                raise TypeError(f"{self.name}() got multiple values for argument {name!r}")
            given[name] = value
        missing = [name for name in self._required if name not in given]
        if missing:
            raise TypeError(f"{self.name}() missing required arguments: {', '.join(missing)}")
        return {
            name: given[name] if name in given else self._defaults[name] for name in self._names
        }

    def request(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Request:
        """The call with these arguments, as it travels."""
        values = self.arguments(args, kwargs)
        path = self._template.format(
            **{name: quote(str(values.pop(name)), safe="") for name in self.path_params}
        )
        if self.spread is not None:
            return Request(path, None, to_jsonable(values[self.spread]))
        if self.body is not None:
            return Request(path, None, {k: to_jsonable(v) for k, v in values.items()})
        params = [(name, value) for name, value in self.params.items()]
        for name, value in values.items():
            params.extend((self.aliases.get(name, name), v) for v in _query_values(value))
        return Request(path, params or None, None)

    def returns(self) -> Any:
        """The declared return type (resolved on first use)."""
        return typing.get_type_hints(self.declared)["return"]


def _query_values(value: Any) -> Iterator[Any]:
    if value is None:
        return
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _query_values(item)
    elif isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, enum.Enum):
        yield value.value
    elif isinstance(value, datetime):
        yield (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    else:
        yield value


def _decorator(
    method: str, path: str, options: dict[str, Any]
) -> Callable[[Callable[Concatenate[Any, P], R]], Op[P, R]]:
    def wrap(declared: Callable[Concatenate[Any, P], R]) -> Op[P, R]:
        return Op(declared, method, path, **options)

    return wrap


def get(path: str, **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Op[P, R]]:
    """Declare a ``GET`` operation (see :class:`Op` for the options)."""
    return _decorator("GET", path, options)


def post(path: str, **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Op[P, R]]:
    """Declare a ``POST`` operation."""
    return _decorator("POST", path, options)


def put(path: str, **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Op[P, R]]:
    """Declare a ``PUT`` operation."""
    return _decorator("PUT", path, options)


def patch(path: str, **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Op[P, R]]:
    """Declare a ``PATCH`` operation."""
    return _decorator("PATCH", path, options)


def delete(path: str, **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Op[P, R]]:
    """Declare a ``DELETE`` operation."""
    return _decorator("DELETE", path, options)


def operations(protocol: type) -> list[Op[Any, Any]]:
    """Every operation declared on ``protocol``, in declaration order."""
    found = []
    for cls in reversed(protocol.__mro__):
        for value in vars(cls).values():
            if isinstance(value, Op):
                found.append(value)
    return found
