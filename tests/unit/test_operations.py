"""The operation table: one declaration per operation, and everything built from it agrees."""

from __future__ import annotations

import inspect
from datetime import datetime

import pytest

from headway.api import schemas
from headway.api.operation import Op, operations
from headway.api.operations import Client
from headway.client.http import HttpClient
from headway.core.states import StateType
from headway.orchestrator import Orchestrator
from headway.server.api_routes import response_model
from headway.server.app import API_PREFIX, create_app
from headway.server.fastpath import HOT
from headway.settings import get_settings

OPS = operations(Client)


def _app_spec() -> dict[str, object]:
    return create_app(get_settings({"HEADWAY_HOME": "/nonexistent"})).openapi()


def test_every_operation_is_declared_once() -> None:
    names = [op.name for op in OPS]
    assert len(names) == len(set(names)) >= 55
    routes = [(op.method, op.path) for op in OPS if op.route]
    assert len(routes) == len(set(routes))


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_the_orchestrator_takes_what_the_declaration_says(op: Op[object, object]) -> None:
    # mypy checks this too (the factory hands an Orchestrator out as a Client);
    # this also holds for a caller that never ran mypy.
    declared = inspect.signature(op.declared).parameters
    implemented = inspect.signature(getattr(Orchestrator, op.name)).parameters
    for name, param in declared.items():
        assert name in implemented, f"{op.name} lacks {name}"
        assert implemented[name].kind == param.kind, f"{op.name}({name})"
        assert implemented[name].default == param.default, f"{op.name}({name})"
    for name in set(implemented) - set(declared):
        assert implemented[name].default is not inspect.Parameter.empty, f"{op.name}({name})"


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_request_models_exist_and_name_the_parameters(op: Op[object, object]) -> None:
    params = set(inspect.signature(op.declared).parameters) - {"self"}
    for model_name in filter(None, (op.body, op.query)):
        model = getattr(schemas, model_name)
        fields = set(model.model_fields)
        if op.spread is None and op.name not in ("acquire_slots", "claim_flow_runs", "read_limit"):
            # Each field is a parameter of the operation, by the same name.
            assert fields <= params, f"{op.name}: {fields - params}"
    for name in op.path_params:
        assert name in params, f"{op.name}: path parameter {name}"


def test_the_openapi_document_declares_every_response_model() -> None:
    spec = _app_spec()
    paths = spec["paths"]
    assert isinstance(paths, dict)
    declared = 0
    for op in OPS:
        if not op.route:
            continue
        operation = paths[API_PREFIX + op.path.replace(":path", "")][op.method.lower()]
        success = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
        assert len(success) == 1, op.name
        [(status, answer)] = success.items()
        if response_model(op) is None:
            assert status == "204", op.name
            continue
        assert int(status) == op.status, op.name
        schema = answer["content"]["application/json"]["schema"]
        assert schema != {}, f"{op.name} declares no response model"
        declared += 1
    assert declared >= 40


def test_the_fast_path_serves_declared_operations() -> None:
    assert [op.name for op in HOT] == ["acquire_slots", "release_slots", "renew_leases"]
    assert all(op.body is not None and op.method == "POST" for op in HOT)


def test_a_call_travels_as_the_declaration_says() -> None:
    read = Client.read_deployment.request(("etl/nightly run",), {})
    assert read.path == "/deployments/etl%2Fnightly%20run"
    assert read.params is None and read.body is None
    listed = Client.list_flow_runs.request(
        (), {"states": [StateType.RUNNING, StateType.PENDING], "flow_name": "f"}
    )
    assert listed.params == [
        ("limit", 20),
        ("state", "RUNNING"),
        ("state", "PENDING"),
        ("flow_name", "f"),
        ("offset", 0),
    ]
    events = Client.read_events.request((), {"since": datetime(2024, 1, 2, 3, 4, 5)})
    assert events.params == [("since", "2024-01-02T03:04:05+00:00"), ("limit", 100)]
    inspected = Client.inspect_limit.request(("a/b",), {})
    assert inspected.path == "/limits/a%2Fb" and inspected.params == [("detail", "true")]
    created = Client.create_limit.request(("db", 3), {"active": False})
    assert created.body == {
        "name": "db",
        "limit": 3,
        "active": False,
        "slot_decay_per_second": 0.0,
        "active_slots": 0,
    }


def test_a_call_with_wrong_arguments_fails_like_a_method() -> None:
    client = HttpClient(get_settings({"HEADWAY_API_URL": "http://127.0.0.1:9"}))
    with pytest.raises(TypeError):
        client.read_limit("a", "b")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client.create_limit(name="db")  # type: ignore[call-arg]
