"""Runs, task runs, states and logs behave the same on every backend."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from headway.client.base import Client
from headway.core.models import LogRecord, TaskRunRecord
from headway.core.states import Completed, Failed, Pending, Running, Scheduled, StateType
from headway.exceptions import IllegalTransition, ObjectNotFound


def new_id() -> str:
    return str(uuid.uuid4())


def test_flow_run_round_trip(client: Client) -> None:
    run_id = new_id()
    created = client.create_flow_run(
        id=run_id,
        name="brave-otter",
        flow_name="etl",
        state=Running(),
        parameters={"n": 3, "items": ["a", "b"], "nested": {"x": None}},
        tags=["nightly", "db"],
        pid=1234,
        host="box",
    )
    assert created.id == run_id
    assert created.state.type is StateType.RUNNING
    assert created.parameters == {"n": 3, "items": ["a", "b"], "nested": {"x": None}}
    assert created.tags == ("nightly", "db")
    assert created.start_time is not None and created.start_time.tzinfo is not None

    finished = client.set_flow_run_state(run_id, Completed(message="all good"))
    assert finished.state.type is StateType.COMPLETED
    assert finished.state.message == "all good"
    assert finished.end_time is not None

    read = client.read_flow_run(run_id)
    assert read == finished
    assert [s.type for s in client.read_states(run_id)] == [
        StateType.RUNNING,
        StateType.COMPLETED,
    ]


def test_errors_are_the_same_classes(client: Client) -> None:
    run_id = new_id()
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Scheduled())
    client.set_flow_run_state(run_id, Failed())
    with pytest.raises(IllegalTransition, match="FAILED -> RUNNING"):
        client.set_flow_run_state(run_id, Running())
    with pytest.raises(IllegalTransition, match="not one of"):
        client.set_flow_run_state(
            run_id, Running(), expect=frozenset({StateType.SCHEDULED, StateType.PENDING})
        )
    missing = new_id()
    with pytest.raises(ObjectNotFound, match=missing):
        client.read_flow_run(missing)
    with pytest.raises(ObjectNotFound):
        client.read_task_run(missing)
    with pytest.raises(ObjectNotFound):
        client.set_flow_run_state(missing, Running())
    # Nothing changed by the refused calls.
    assert client.read_flow_run(run_id).state.type is StateType.FAILED


def test_list_filters_and_order(client: Client) -> None:
    ids = []
    for i in range(5):
        run_id = new_id()
        ids.append(run_id)
        client.create_flow_run(
            id=run_id, name=f"r{i}", flow_name="even" if i % 2 == 0 else "odd", state=Pending()
        )
    client.set_flow_run_state(ids[0], Running())
    newest_first = [r.id for r in client.list_flow_runs(limit=10)]
    assert newest_first == list(reversed(ids))
    assert [r.id for r in client.list_flow_runs(limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in client.list_flow_runs(limit=2, offset=2)] == [ids[2], ids[1]]
    assert {r.id for r in client.list_flow_runs(flow_name="even")} == {ids[0], ids[2], ids[4]}
    assert [r.id for r in client.list_flow_runs(states=[StateType.RUNNING])] == [ids[0]]
    assert client.list_flow_runs(states=[StateType.RUNNING, StateType.PENDING], limit=100)


def _task_record(flow_run_id: str, i: int, message: str = "") -> TaskRunRecord:
    return TaskRunRecord(
        id=new_id(),
        flow_run_id=flow_run_id,
        name=f"task-{i}",
        task_key=f"mod.task-{i}",
        tags=("db",) if i % 2 else (),
        created=time.time() + i * 1e-6,
        states=(Pending(), Running(), Completed(message=message or None)),
        run_count=1,
    )


def test_task_runs_and_a_batch_larger_than_the_body_limit(backend: Any) -> None:
    client = backend.client
    run_id = new_id()
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
    # ~2 MiB in all: over the server's 1 MiB limit for ordinary bodies, which the
    # batch route must not apply.
    filler = "x" * 1000
    records = [_task_record(run_id, i, filler) for i in range(1500)]
    client.record_task_runs(records)
    task_runs = client.read_task_runs(run_id)
    assert len(task_runs) == 1500
    assert {t.id for t in task_runs} == {r.id for r in records}
    first = client.read_task_run(records[1].id)
    assert first.tags == ("db",)
    assert first.state.type is StateType.COMPLETED
    assert first.state.message == filler
    assert [s.type for s in client.read_states(records[1].id)] == [
        StateType.PENDING,
        StateType.RUNNING,
        StateType.COMPLETED,
    ]
    with_tasks = client.read_flow_run(run_id, with_task_runs=True)
    assert with_tasks.task_runs is not None and len(with_tasks.task_runs) == 1500


def test_logs_in_order_after_an_id(client: Client) -> None:
    run_id = new_id()
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
    now = datetime.now(UTC)
    lines = [
        LogRecord(run_id, None, logging.INFO, "INFO", "headway.test", f"line {i} é✓", now)
        for i in range(3000)
    ]
    client.write_logs(lines)
    read = client.read_logs(run_id)
    assert [r.message for _, r in read] == [f"line {i} é✓" for i in range(3000)]
    assert read[0][1].timestamp == now
    assert read[0][1].level_name == "INFO"
    after = client.read_logs(run_id, after_id=read[2999 - 5][0])
    assert [r.message for _, r in after] == [f"line {i} é✓" for i in range(2995, 3000)]
