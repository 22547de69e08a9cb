"""The one error tree: every class in exceptions.py, each by name, each back as itself over HTTP."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys

import pytest

import headway
from headway import exceptions
from headway.client.wire import error_from_response
from headway.server.errors import error_response, headway_error_answer


def _every_headway_module() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(headway.__path__, "headway."):
        # Alembic's scripts run on import (env.py configures a migration context).
        if info.name.startswith("headway.store.migrations"):
            continue
        names.append(info.name)
    return names


def _subclasses(root: type[exceptions.HeadwayError]) -> set[type[exceptions.HeadwayError]]:
    found: set[type[exceptions.HeadwayError]] = set()
    stack = [root]
    while stack:
        cls = stack.pop()
        if cls not in found:
            found.add(cls)
            stack.extend(cls.__subclasses__())
    return found


def _instance(cls: type[exceptions.HeadwayError]) -> exceptions.HeadwayError:
    if cls is exceptions.MissingExtra:
        return exceptions.MissingExtra("the feature", "postgres")
    return cls("what went wrong")


def test_every_error_headway_defines_is_in_exceptions_and_in_the_registry() -> None:
    for name in _every_headway_module():
        importlib.import_module(name)
    # Every class of the tree, wherever it was defined (tests define none).
    tree = {cls for cls in _subclasses(exceptions.HeadwayError) if cls.__module__ != __name__}
    outside = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in tree
        if cls.__module__ != "headway.exceptions"
    )
    assert outside == [], "every error class belongs in headway/exceptions.py"
    assert set(exceptions.BY_NAME.values()) == tree
    assert all(exceptions.BY_NAME[cls.__name__] is cls for cls in tree)
    # ... and the module's own namespace holds nothing the registry misses.
    declared = {
        obj
        for obj in vars(exceptions).values()
        if inspect.isclass(obj) and issubclass(obj, exceptions.HeadwayError)
    }
    assert declared == tree


def test_every_class_is_drawn_in_the_docstring() -> None:
    drawing = exceptions.__doc__ or ""
    # A name starts a line of the drawing, after its branch ("├── ") or alone at the root.
    missing = [n for n in exceptions.BY_NAME if not re.search(rf"(── |^    ){n}\b", drawing, re.M)]
    assert missing == []


@pytest.mark.parametrize("cls", list(exceptions.BY_NAME.values()), ids=list(exceptions.BY_NAME))
def test_an_error_crosses_http_as_its_own_class(cls: type[exceptions.HeadwayError]) -> None:
    raised = _instance(cls)
    # The server's one error shape, then the HttpClient's reading of it.
    response = error_response(*headway_error_answer(raised, "/api/test"))
    assert json.loads(response.body)["error"] == cls.__name__
    received = error_from_response(response.status_code, bytes(response.body))
    assert type(received) is cls
    assert str(received) == str(raised)


def test_the_client_finds_each_class_without_importing_the_module_that_raises_it() -> None:
    # A process that imported only the HTTP client still knows the store's and the
    # schedules' errors: the class comes from the registry, not from what was loaded.
    script = """
import json
from headway import exceptions
from headway.client.wire import error_from_response
def received(name, status):
    body = json.dumps({"detail": "x", "error": name}).encode()
    return type(error_from_response(status, body)).__name__
got = {name: received(name, cls.http_status) for name, cls in exceptions.BY_NAME.items()}
print(json.dumps(got))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got == {name: name for name in exceptions.BY_NAME}


def test_an_unknown_name_falls_back_by_status() -> None:
    body = json.dumps({"detail": "nope", "error": "NotAHeadwayError"}).encode()
    assert type(error_from_response(422, body)) is exceptions.ValidationError
    assert type(error_from_response(401, body)) is exceptions.ConfigurationError
    assert type(error_from_response(500, body)) is exceptions.ServerError
