"""Flow and task runs as rows: the records read from them.

Shared by every part that reads or writes runs (runs, run leases, scheduling,
claims), and the checks of what a run's row can hold. The columns these rows
carry are ``FLOW_COLUMNS`` and ``TASK_COLUMNS`` of ``queries/runs.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from headway.core.bounds import epoch_of
from headway.core.limits import validate_name
from headway.core.models import FlowRun, TaskRun, ts_to_dt
from headway.core.states import State, StateType, is_allowed
from headway.exceptions import ValidationError
from headway.store.db import Row


def run_state_of(row: Row, offset: int) -> State:
    """The :class:`State` held in a run row's state columns, from ``offset``."""
    return State(
        StateType(row[offset]),
        row[offset + 1],
        ts_to_dt(row[offset + 3]) or State(StateType.PENDING).timestamp,
        row[offset + 2],
    )


def flow_run_of(row: Row, task_runs: tuple[TaskRun, ...] | None = None) -> FlowRun:
    """A :class:`FlowRun` from a row of ``queries.runs.FLOW_COLUMNS``."""
    return FlowRun(
        id=row[0],
        name=row[1],
        flow_name=row[2],
        deployment=row[3],
        parent_task_run_id=row[4],
        parameters=json.loads(row[5]),
        tags=tuple(json.loads(row[6])),
        state=run_state_of(row, 7),
        created=ts_to_dt(row[11]),
        expected_start_time=ts_to_dt(row[12]),
        start_time=ts_to_dt(row[13]),
        end_time=ts_to_dt(row[14]),
        run_count=row[15],
        priority=row[16],
        work_pool=row[17],
        work_queue=row[18],
        task_runs=task_runs,
        updated=ts_to_dt(row[19]),
    )


def task_run_of(row: Row) -> TaskRun:
    """A :class:`TaskRun` from a row of ``queries.runs.TASK_COLUMNS``."""
    return TaskRun(
        id=row[0],
        flow_run_id=row[1],
        name=row[2],
        task_key=row[3],
        tags=tuple(json.loads(row[4])),
        state=run_state_of(row, 5),
        created=ts_to_dt(row[9]),
        start_time=ts_to_dt(row[10]),
        end_time=ts_to_dt(row[11]),
        run_count=row[12],
        updated=ts_to_dt(max(row[8], row[9])),
    )


def new_states(
    states: Sequence[State], stored: tuple[float, StateType] | None
) -> list[tuple[State, float]]:
    """The states of a record to write, with their timestamps: those newer than the
    stored one, up to the first the state machine forbids from the state before it."""
    out: list[tuple[State, float]] = []
    if stored is None:
        after, current = None, None
    else:
        after, current = stored
    for s in states:
        ts = s.timestamp.timestamp()
        if after is not None and ts <= after:
            continue
        if not is_allowed(current, s.type):
            break  # out of a final state, or a jump the machine forbids: refused
        out.append((s, ts))
        current = s.type
    return out


def state_ts(state: State) -> float:
    """A state's time as stored (epoch seconds), checked to fit."""
    return epoch_of(state.timestamp, "state timestamp")


def state_row(run_id: str, kind: str, state: State, ts: float) -> dict[str, Any]:
    """The parameters of one row of ``states``."""
    return {
        "run_id": run_id,
        "kind": kind,
        "type": state.type.value,
        "name": state.name,
        "message": state.message,
        "ts": ts,
    }


#: Longest run id: a UUID in its text form (what the columns and the HTTP API allow).
RUN_ID_MAX = 36


def check_run_fields(
    id: object, name: object, flow_name: object, parent: object, tags: Sequence[object]
) -> None:
    """Refuse ids and names the HTTP API would refuse, so the embedded store is as strict."""
    for value, what in ((id, "flow run id"), (parent, "parent task run id")):
        if value is None and what != "flow run id":
            continue
        if not isinstance(value, str) or not 0 < len(value) <= RUN_ID_MAX:
            raise ValidationError(f"{what} must be 1 to {RUN_ID_MAX} characters, got {value!r}")
        if not value.isprintable():
            raise ValidationError(f"{what} {value!r} contains control or invisible characters")
    validate_name(name, "flow run name")
    validate_name(flow_name, "flow name")
    for tag in tags:
        validate_name(tag, "tag")


__all__ = [
    "RUN_ID_MAX",
    "check_run_fields",
    "flow_run_of",
    "new_states",
    "run_state_of",
    "state_row",
    "state_ts",
    "task_run_of",
]
