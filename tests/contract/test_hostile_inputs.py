"""Hostile and impossible inputs: refused at the boundary, and one bad record breaks nothing else.

Each case here was, before it was fixed, a single input that passed validation,
was stored, and then broke something for everyone: a schedule that stopped
every scheduler pass, a timestamp that made every later list of runs answer
500, an integer the store could not hold, a NaN that made answers not JSON.

- Each input is refused (a ValidationError through the Python API, 422 with
  the error shape over HTTP) and the store is left exactly as it was.
- "Poisoned neighbour": a bad deployment is planted directly in the store
  (the API now refuses it) beside good ones, and the good ones are still
  scheduled; the bad one is skipped, recorded as an event, and shown by
  ``headway deployment inspect``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from test_bad_input import assert_refused_without_change, build_world

from headway.cli import main as cli_main
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.limits import ProcessInfo
from headway.core.models import LogRecord, TaskRunRecord
from headway.core.states import Running, State, StateType
from headway.exceptions import ValidationError
from headway.store.db import Database

if TYPE_CHECKING:
    from conftest import Backend

#: Valid datetimes whose UTC time is outside years 1..9999.
LATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=14)))
EARLY = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
LATE_TEXT = "9999-12-31T23:59:59-14:00"
EARLY_TEXT = "0001-01-01T00:00:00+14:00"

#: Schedules the API now refuses, as they were stored before (each broke every pass).
POISONS: list[dict[str, Any]] = [
    {"cron": "0 0 30 2 *", "timezone": "UTC"},
    {"cron": "0 0 31 2 *", "timezone": "UTC"},
    {"interval": 1e308, "anchor": "2020-01-01T00:00:00+00:00", "timezone": "UTC"},
    {"rrule": "FREQ=SECONDLY;INTERVAL=1;COUNT=1000000000", "timezone": "UTC"},
]


def two_ends(backend_name: str, request: pytest.FixtureRequest) -> tuple[Backend, Client]:
    """Embedded SQLite and server on PostgreSQL only, for checks made before any SQL."""
    if backend_name not in ("embedded-sqlite", "server-postgres"):
        pytest.skip("refused before any SQL: runs on the two ends of the backend matrix")
    return request.getfixturevalue("backend"), request.getfixturevalue("client")


def _refusal(call: Callable[[], object]) -> str | None:
    """None when ``call`` raises a ValidationError; else what happened."""
    try:
        call()
    except ValidationError:
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc} (not a ValidationError)"
    return "accepted"


def _store_url(backend: Backend) -> str:
    settings = backend.server.settings if backend.server is not None else backend.settings
    url: str = settings.effective_database_url
    return url


def plant_deployment(backend: Backend, name: str, schedule: dict[str, Any]) -> None:
    """Insert a deployment with ``schedule`` straight into the store, as an older version did."""
    db = Database(_store_url(backend))
    try:
        dep_id = str(uuid.uuid4())
        with db.write() as tx:
            tx.execute(
                "INSERT INTO deployments (id, full_name, flow_name, name, parameters, tags,"
                " paused, collision_strategy, description, created, updated) VALUES (:id, :full,"
                " 'bad', :name, '{}', '[]', :f, 'ENQUEUE', '', 0, 0)",
                {"id": dep_id, "full": f"bad/{name}", "name": name, "f": False},
            )
            tx.execute(
                "INSERT INTO deployment_schedules (id, deployment_id, position, schedule, active)"
                " VALUES (:id, :d, 0, :s, :t)",
                {"id": str(uuid.uuid4()), "d": dep_id, "s": json.dumps(schedule), "t": True},
            )
    finally:
        db.close()


# -- 1. one schedule stops scheduling for every deployment --------------------------------
def test_impossible_schedules_are_refused_and_nothing_is_stored(
    backend_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend, client = two_ends(backend_name, request)
    build_world(client, tmp_path)

    def deploy(schedule: dict[str, Any]) -> Callable[[], str | None]:
        spec = DeploymentSpec(flow_name="f", name="impossible", schedules=(schedule,))
        return lambda: _refusal(lambda: client.apply_deployment(spec))

    cases = [
        {"cron": "0 0 30 2 *"},
        {"cron": "0 0 31 2 *"},
        {"cron": "0 0 31 4,6,9,11 *"},
        {"interval": 1e308},
        {"interval": "99999999999w"},
        {"interval": 1e-300},
        {"interval": 60, "anchor": LATE_TEXT},
        {"rrule": "FREQ=SECONDLY;INTERVAL=1;COUNT=1000000000"},
        {"rrule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"},
        {"rrule": "FREQ=MINUTELY;BYMONTH=4;BYMONTHDAY=31"},
        {"rrule": "RRULE:FREQ=DAILY\nEXRULE:FREQ=DAILY"},
    ]
    assert_refused_without_change(backend, [(str(c), deploy(c)) for c in cases])


def test_poisoned_neighbour_good_deployments_are_still_scheduled(
    client: Client, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    client.apply_deployment(
        DeploymentSpec(flow_name="f", name="before", schedules=({"interval": 60},))
    )
    for i, poison in enumerate(POISONS):
        plant_deployment(backend, f"p{i}", poison)
    plant_deployment(backend, "damaged", {"cron": 12})  # not even a valid record

    # Creating a deployment schedules its runs: it neither fails nor is left without runs.
    client.apply_deployment(
        DeploymentSpec(flow_name="f", name="after", schedules=({"cron": "* * * * *"},))
    )
    assert len(client.list_flow_runs(deployment="f/after", limit=100)) == 10
    client.schedule_runs()

    # Each bad one is skipped with its name and reason, recorded once (not on every pass).
    events = client.read_events(kind="deployment.schedule_failed", limit=100).events
    details = [e.detail or "" for e in events]
    for i in range(len(POISONS)):
        assert sum(d.startswith(f"bad/p{i}:") for d in details) == 1, details
    assert any(d.startswith("bad/damaged:") and "string" in d for d in details), details

    # Later passes go on scheduling the good ones: the next ten of each. (Counted
    # from the jump: the passes above may have made one more run than ten, when
    # the wall clock passed one of the schedule's times between them.)
    backend.clock.advance(3600)
    jumped = datetime.fromtimestamp(backend.clock.now(), UTC)
    client.schedule_runs()
    for name in ("f/before", "f/after"):
        runs = client.list_flow_runs(deployment=name, limit=100)
        later = [r for r in runs if r.expected_start_time and r.expected_start_time >= jumped]
        assert len(later) == 10 and len(runs) >= 20, (name, len(later), len(runs))
    assert not client.list_flow_runs(flow_name="bad", limit=100)

    # ``deployment inspect`` says why the schedule cannot be computed.
    capsys.readouterr()
    assert cli_main(["deployment", "inspect", "bad/p0"]) == 0
    out = capsys.readouterr().out
    assert "cannot be computed" in out and "never fires" in out, out
    assert cli_main(["deployment", "inspect", "f/before"]) == 0
    assert "next " in capsys.readouterr().out


def test_cli_deploy_refuses_an_interval_past_a_datetime(
    backend_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, client = two_ends(backend_name, request)
    world = build_world(client, tmp_path)
    deploy = ["deploy", world["entrypoint"], "--name", "o", "--pool", "pool", "--param", "x=1"]
    for extra in (["--interval", "99999999999w"], ["--cron", "0 0 30 2 *"]):
        capsys.readouterr()
        code = cli_main([*deploy, *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    assert [d.full_name for d in client.list_deployments()] == ["fn/bare", "fn/dep"]


# -- 2. one timestamp breaks later reads for good -----------------------------------------
def python_timestamp_cases(
    client: Client, world: dict[str, str]
) -> list[tuple[str, Callable[[], str | None]]]:
    run_id = world["run_id"]
    cases: list[tuple[str, Callable[[], object]]] = []
    for label, when in (("late", LATE), ("early", EARLY)):
        state = State(StateType.RUNNING, "Running", when)
        done = State(StateType.COMPLETED, "Completed", when)
        cases += [
            (
                f"create run {label}",
                lambda s=state: client.create_flow_run(
                    id=str(uuid.uuid4()), name="r", flow_name="f", state=s
                ),
            ),
            (f"set state {label}", lambda s=done: client.set_flow_run_state(run_id, s)),
            (
                f"log {label}",
                lambda w=when: client.write_logs(
                    [LogRecord(run_id, None, 20, "INFO", "l", "m", w)]
                ),
            ),
            (
                f"task run {label}",
                lambda s=state: client.record_task_runs(
                    [TaskRunRecord(str(uuid.uuid4()), run_id, "t", "k", (), 1.0, (s,), 1)]
                ),
            ),
            (
                f"scheduled_time {label}",
                lambda w=when: client.create_deployment_run("fn/dep", scheduled_time=w),
            ),
        ]
    return [(label, lambda c=call: _refusal(c)) for label, call in cases]


def test_python_api_refuses_timestamps_outside_years_1_to_9999_in_utc(
    client: Client, backend: Backend, tmp_path: Path
) -> None:
    world = build_world(client, tmp_path)
    assert_refused_without_change(backend, python_timestamp_cases(client, world))
    assert_everything_still_reads(client, world["run_id"])


def assert_everything_still_reads(client: Client, run_id: str) -> None:
    """Every list that met a bad timestamp before answers."""
    client.list_flow_runs(limit=100)
    client.read_flow_run(run_id, with_task_runs=True)
    client.read_states(run_id)
    client.read_logs(run_id)
    client.read_task_runs(run_id)
    client.read_events(limit=100)
    client.status()


def _http(backend: Backend) -> httpx.Client:
    assert backend.api_url is not None
    headers = {"Authorization": f"Bearer {backend.env['HEADWAY_API_KEY']}"}
    return httpx.Client(base_url=backend.api_url + "/api/v1", headers=headers, timeout=30)


def _answer_problem(answer: httpx.Response, status: int) -> str | None:
    if answer.status_code != status:
        return f"{answer.status_code} {answer.text[:200]}, wanted {status}"
    try:
        payload = strict_json(answer.text)
    except ValueError as exc:
        return f"not strict JSON: {exc}: {answer.text[:200]}"
    if status >= 400 and (not isinstance(payload, dict) or set(payload) != {"detail", "error"}):
        return f"not the error shape: {answer.text[:200]}"
    return None


def strict_json(text: str) -> Any:
    """JSON as a strict parser reads it: NaN and Infinity are errors."""

    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _raw_json(value: Any) -> bytes:
    """``value`` as Python writes it, NaN and Infinity included (what a careless client sends)."""
    return json.dumps(value).encode()


def test_http_refuses_timestamps_outside_years_1_to_9999_in_utc(
    server_backend: Backend, tmp_path: Path
) -> None:
    backend = server_backend
    world = build_world(backend.client, tmp_path)
    run_id = world["run_id"]
    cases: list[tuple[str, str, Any]] = []
    for stamp in (LATE_TEXT, EARLY_TEXT):
        state = {"type": "RUNNING", "timestamp": stamp}
        cases += [
            ("POST", "/flow_runs",
             {"id": str(uuid.uuid4()), "name": "r", "flow_name": "f", "state": state}),
            ("POST", f"/flow_runs/{run_id}/state",
             {"state": {"type": "COMPLETED", "timestamp": stamp}}),
            ("POST", "/logs/batch",
             {"records": [{"flow_run_id": run_id, "level": 20, "logger": "l", "message": "m",
                           "timestamp": stamp}]}),
            ("POST", "/task_runs/batch",
             {"records": [{"id": str(uuid.uuid4()), "flow_run_id": run_id, "name": "t",
                           "task_key": "k", "created": 1.0, "states": [state]}]}),
            ("POST", "/deployments/fn/dep/runs", {"scheduled_time": stamp}),
        ]  # fmt: skip
    with _http(backend) as http:
        tried = [
            (f"{m} {p} {b}", lambda m=m, p=p, b=b: _answer_problem(http.request(m, p, json=b), 422))
            for m, p, b in cases
        ]
        assert_refused_without_change(backend, tried)
        for path in (
            "/flow_runs",
            f"/flow_runs/{run_id}",
            f"/flow_runs/{run_id}/logs",
            f"/flow_runs/{run_id}/task_runs",
            f"/runs/{run_id}/states",
            "/events",
        ):
            assert _answer_problem(http.get(path), 200) is None, path
    assert_everything_still_reads(backend.client, run_id)


# -- 4. integers the store cannot hold ------------------------------------------------------
def test_integers_past_their_column_are_refused(
    client: Client, backend: Backend, tmp_path: Path
) -> None:
    build_world(client, tmp_path)
    worker = client.register_worker("pool", "claimer")
    cases: list[tuple[str, Callable[[], object]]] = []
    for value in (2**31, 2**63, 2**64, -1):
        cases += [
            (
                f"acquire pid {value}",
                lambda v=value: client.acquire_slots(["db"], 1, process=ProcessInfo(v, "h")),
            ),
            (
                f"flow run pid {value}",
                lambda v=value: client.create_flow_run(
                    id=str(uuid.uuid4()), name="r", flow_name="f", state=Running(), pid=v
                ),
            ),
            (f"worker pid {value}", lambda v=value: client.register_worker("pool", "w", pid=v)),
            (
                f"claim limit {value}",
                lambda v=value: client.claim_flow_runs(worker.id, pool="pool", limit=v),
            ),
        ]
    for value in (2**63, 2**64, -1):
        cases.append(
            (
                f"acquire proc_start {value}",
                lambda v=value: client.acquire_slots(
                    ["db"], 1, process=ProcessInfo(1, "h", "node", v)
                ),
            )
        )
    tried = [(label, lambda c=call: _refusal(c)) for label, call in cases]
    assert_refused_without_change(backend, tried)


def test_http_integers_past_their_column_are_422(server_backend: Backend, tmp_path: Path) -> None:
    backend = server_backend
    build_world(backend.client, tmp_path)
    run = {"id": "", "name": "r", "flow_name": "f", "state": {"type": "RUNNING"}}
    cases: list[tuple[str, Any]] = []
    for big in (2**31, 2**63, 2**64):
        cases += [
            ("/slots/acquire", {"names": ["db"], "slots": 1, "process": {"pid": big, "host": "h"}}),
            ("/flow_runs", {**run, "id": str(uuid.uuid4()), "pid": big}),
            ("/workers", {"pool": "pool", "name": "w", "pid": big}),
        ]
    for big in (2**63, 2**64):
        process = {"pid": 1, "host": "h", "proc_start": big}
        cases.append(("/slots/acquire", {"names": ["db"], "slots": 1, "process": process}))
    with _http(backend) as http:
        tried = [
            (f"{p} {b}", lambda p=p, b=b: _answer_problem(http.post(p, json=b), 422))
            for p, b in cases
        ]
        assert_refused_without_change(backend, tried)


# -- 3 and 5. bounded cost, and answers that are JSON -----------------------------------------
def test_http_non_finite_numbers_are_refused_and_answers_are_strict_json(
    server_backend: Backend, tmp_path: Path
) -> None:
    backend = server_backend
    world = build_world(backend.client, tmp_path)
    run = {"name": "r", "flow_name": "f", "state": {"type": "RUNNING"}}
    dep = {"flow_name": "fn", "name": "other", "work_pool": "pool"}
    cases: list[tuple[str, Any]] = []
    for bad in (math.nan, math.inf, -math.inf):
        cases += [
            ("/flow_runs", {**run, "id": str(uuid.uuid4()), "parameters": {"x": bad}}),
            ("/flow_runs", {**run, "id": str(uuid.uuid4()), "parameters": {"x": [{"y": bad}]}}),
            ("/deployments", {**dep, "parameters": {"x": bad}}),
            ("/deployments/fn/dep/runs", {"parameters": {"x": bad}}),
            ("/limits", {"name": "r", "limit": 1, "slot_decay_per_second": bad}),
            ("/slots/acquire", {"names": ["db"], "slots": 1, "lease_seconds": bad}),
            ("/deployments", {**dep, "schedules": [{"interval": bad}]}),
        ]
    cases += [
        ("/limits", {"name": "r", "limit": 1, "slot_decay_per_second": 5e-324}),
        ("/deployments", {**dep, "schedules": [{"interval": 1e308}]}),
        ("/deployments", {**dep, "schedules": [{"rrule": "FREQ=SECONDLY;COUNT=1000000000"}]}),
    ]
    with _http(backend) as http:
        json_type = {"Content-Type": "application/json"}
        tried = [
            (
                f"{p} {b}",
                lambda p=p, b=b: _answer_problem(
                    http.post(p, content=_raw_json(b), headers=json_type), 422
                ),
            )
            for p, b in cases
        ]
        # ``1e999`` is how a number too large for a double arrives: Python reads it as inf.
        tried.append(
            (
                "1e999",
                lambda: _answer_problem(
                    http.post(
                        "/flow_runs",
                        content=b'{"id": "%s", "name": "r", "flow_name": "f",'
                        b' "state": {"type": "RUNNING"}, "parameters": {"x": 1e999}}'
                        % str(uuid.uuid4()).encode(),
                        headers=json_type,
                    ),
                    422,
                ),
            )
        )
        assert_refused_without_change(backend, tried)
        # A rate limit decaying as slowly as allowed answers a finite retry_after.
        slow = {"name": "slow", "limit": 1, "slot_decay_per_second": 1e-9}
        assert http.post("/limits", json=slow).status_code < 300
        for _ in range(2):
            answer = http.post(
                "/slots/acquire", json={"names": ["slow"], "slots": 1, "mode": "rate"}
            )
            assert answer.status_code == 200, answer.text
            strict_json(answer.text)
        for path in ("/flow_runs", f"/flow_runs/{world['run_id']}", "/limits", "/deployments"):
            assert _answer_problem(http.get(path), 200) is None, path


def test_python_api_refuses_non_finite_numbers(
    backend_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend, client = two_ends(backend_name, request)
    build_world(client, tmp_path)
    cases: list[tuple[str, Callable[[], object]]] = []
    for bad in (math.nan, math.inf, -math.inf):
        cases += [
            (
                f"run parameters {bad}",
                lambda b=bad: client.create_flow_run(
                    id=str(uuid.uuid4()), name="r", flow_name="f", state=Running(),
                    parameters={"x": {"y": [b]}},
                ),
            ),
            (
                f"deployment run parameters {bad}",
                lambda b=bad: client.create_deployment_run("fn/dep", parameters={"x": b}),
            ),
        ]  # fmt: skip
    cases.append(
        ("decay 5e-324", lambda: client.create_limit("tiny", 1, slot_decay_per_second=5e-324))
    )
    assert_refused_without_change(backend, [(lbl, lambda c=c: _refusal(c)) for lbl, c in cases])


def test_stored_bad_values_still_read(client: Client, backend: Backend) -> None:
    """A run written before these checks (a year-10000 time, a NaN parameter) still lists."""
    run_id = str(uuid.uuid4())
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
    db = Database(_store_url(backend))
    try:
        with db.write() as tx:
            tx.execute(
                "UPDATE flow_runs SET state_timestamp = :late, created = :early,"
                " parameters = :params WHERE id = :id",
                {"late": 253402351199.0, "early": -62135647200.0, "id": run_id,
                 "params": '{"x": NaN}'},
            )  # fmt: skip
    finally:
        db.close()
    [run] = client.list_flow_runs()
    assert run.state.timestamp.year == 9999 and run.created is not None
    assert run.created.year == 1
    assert_everything_still_reads(client, run_id)
    if backend.is_server:
        with _http(backend) as http:
            assert _answer_problem(http.get("/flow_runs"), 200) is None


def test_list_arguments_past_a_64_bit_integer_are_refused(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    _, client = two_ends(backend_name, request)
    run_id = str(uuid.uuid4())
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
    calls: list[Callable[[], object]] = [
        lambda: client.list_flow_runs(limit=10**30),
        lambda: client.list_flow_runs(offset=2**63),
        lambda: client.list_flow_runs(limit=-1),
        lambda: client.read_logs(run_id, after_id=2**64),
        lambda: client.read_events(after="e" + "9" * 30 + ".s1"),
        lambda: client.read_events(after="e-1.s-1"),
    ]
    assert [_refusal(call) for call in calls] == [None] * len(calls)
    assert [r.id for r in client.list_flow_runs(limit=10_000)] == [run_id]


def test_the_openapi_document_declares_the_ranges() -> None:
    """What a schema fuzzer needs to generate edge values."""
    from headway.server.app import create_app
    from headway.settings import get_settings

    spec = create_app(get_settings({"HEADWAY_HOME": "/nonexistent"})).openapi()
    schemas = spec["components"]["schemas"]

    def prop(model: str, name: str) -> dict[str, Any]:
        field: dict[str, Any] = schemas[model]["properties"][name]
        options = field.get("anyOf", [field])
        return next(o for o in options if o.get("type") in ("integer", "number", "string"))

    assert prop("ProcessIn", "pid")["maximum"] == 2**31 - 1
    assert prop("ProcessIn", "proc_start")["maximum"] == float(2**63 - 1)  # as JSON writes it
    assert prop("FlowRunCreate", "pid")["maximum"] == 2**31 - 1
    assert prop("WorkerRegister", "pid")["maximum"] == 2**31 - 1
    assert prop("LimitCreate", "limit")["maximum"] == 2**31 - 1
    assert prop("TaskRunRecordIn", "created")["maximum"] == 253402300799.0
    assert prop("LogRecordIn", "timestamp")["format"] == "date-time"
