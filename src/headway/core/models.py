"""Typed records passed between the store, the orchestrator, clients and the CLI.

Plain frozen dataclasses: cheap to build on the hot path, and turned into JSON
by :func:`to_jsonable` for the CLI and the HTTP API. Times are timezone-aware UTC.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headway.core.states import State, StateType

#: The first and last instants a datetime can hold, as stored times are read back.
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)

#: Float slot counts within this of a whole number are that number (as in core.limits).
_SLOT_TOLERANCE = 1e-9


def whole_slots(exact: float) -> int:
    """Occupied slots as admission counts them: the exact occupancy rounded up."""
    return max(0, math.ceil(exact - _SLOT_TOLERANCE))


def ts_to_dt(ts: float | None) -> datetime | None:
    """Epoch seconds (as stored) to an aware UTC datetime.

    Every input is checked to fit (:mod:`headway.core.bounds`); a time outside
    years 1..9999 written before that (or by hand) reads as the nearest end of
    the range instead of failing every list that meets it.
    """
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return _FIRST if ts < 0 else _LAST


@dataclass(frozen=True)
class FlowRun:
    """One execution of a flow."""

    id: str
    name: str
    flow_name: str
    state: State
    parameters: dict[str, Any] = field(default_factory=dict)
    deployment: str | None = None
    parent_task_run_id: str | None = None
    tags: tuple[str, ...] = ()
    created: datetime | None = None
    expected_start_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_count: int = 0
    priority: int = 0
    work_pool: str | None = None
    work_queue: str | None = None
    task_runs: tuple[TaskRun, ...] | None = None
    #: When the record last changed: its state, its claim by a worker, what it waits
    #: on (a worker's heartbeat, which only extends the run's lease, is not a change).
    updated: datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from start to end (or to now while running)."""
        if self.start_time is None:
            return None
        end = self.end_time or datetime.now(UTC)
        return (end - self.start_time).total_seconds()


@dataclass(frozen=True)
class TaskRun:
    """One execution of a task inside a flow run."""

    id: str
    flow_run_id: str | None
    name: str
    task_key: str
    state: State
    tags: tuple[str, ...] = ()
    created: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_count: int = 0
    #: When it last changed: its latest state, as its engine recorded it (a task run
    #: changes only by its states).
    updated: datetime | None = None


@dataclass(frozen=True)
class TaskRunRecord:
    """A task run as the task engine reports it: its row and the states it went through."""

    id: str
    flow_run_id: str | None
    name: str
    task_key: str
    tags: tuple[str, ...]
    created: float
    states: tuple[State, ...]
    run_count: int = 0


@dataclass(frozen=True)
class StateRecord:
    """A recorded state change of a run."""

    run_id: str
    state: State


@dataclass(frozen=True)
class LogRecord:
    """One log line of a run."""

    flow_run_id: str | None
    task_run_id: str | None
    level: int
    level_name: str
    logger: str
    message: str
    timestamp: datetime


@dataclass(frozen=True)
class LogLine:
    """A stored log line with its id (pass the last one back as ``after_id`` to follow).

    It unpacks and indexes as the pair ``(id, record)`` it was before it had a name.
    """

    id: int
    record: LogRecord

    def __iter__(self) -> Iterator[Any]:
        return iter((self.id, self.record))

    def __getitem__(self, index: int) -> Any:
        return (self.id, self.record)[index]


@dataclass(frozen=True)
class Limit:
    """A named concurrency (or, with decay, rate) limit of any scope.

    ``active_slots`` is a whole number, as in Prefect: the slots admission counts
    as taken, rounded up (a rate limit at 9.81 of 10 has no room for a slot, so
    it shows 10). ``exact_active_slots`` keeps the exact, decayed occupancy. Built
    from the exact value alone (``Limit(..., active_slots=9.81, ...)``), both are
    filled in.
    """

    name: str
    limit: int
    active: bool
    active_slots: float
    slot_decay_per_second: float
    grants: int = 0
    denials: int = 0
    waiters: int = 0
    created: datetime | None = None
    exact_active_slots: float | None = None
    #: A stable id besides the name (the name is the key everywhere else).
    id: str | None = None
    #: When its settings last changed (limit, enabled, decay, slots set or reset by
    #: hand); taking and giving back slots is its use, not a change.
    updated: datetime | None = None

    def __post_init__(self) -> None:
        exact = self.exact_active_slots
        if exact is None:
            exact = float(self.active_slots)
            object.__setattr__(self, "exact_active_slots", exact)
        object.__setattr__(self, "active_slots", whole_slots(exact))

    @property
    def scope(self) -> str:
        """``tag``, ``deployment``, ``pool``, ``queue`` or ``global``."""
        prefix, sep, _ = self.name.partition(":")
        if sep and prefix in {"tag", "deployment", "pool", "queue"}:
            return prefix
        return "global"


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: kind (``code``, ``task_run``, ``flow_run``), id, process, host."""

    kind: str
    id: str | None
    pid: int
    host: str


@dataclass(frozen=True)
class Lease:
    """Slots held on one or more limits until released or expired."""

    id: str
    slots: dict[str, int]
    holder: Holder
    created: datetime
    expires: datetime


@dataclass(frozen=True)
class Waiter:
    """A request queued on a limit, in grant order."""

    id: int
    limit_name: str
    position: int
    slots: int
    priority: int
    holder: Holder
    since: datetime


_PLAIN = (str, int, float, bool, type(None))
#: Field names of each dataclass type seen (dataclasses.fields() is slow on a hot path).
_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def to_jsonable(value: Any) -> Any:
    """Dataclasses, states, enums and datetimes as JSON-ready values."""
    if isinstance(value, _PLAIN) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, State):
        return {
            "type": value.type.value,
            "name": value.name,
            "timestamp": value.timestamp.isoformat(),
            "message": value.message,
        }
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for name in _field_names(type(value)):
            item = getattr(value, name)
            if name == "task_runs" and item is None:
                continue
            out[name] = to_jsonable(item)
        return out
    return value


__all__ = [
    "ClaimedRun",
    "Deployment",
    "DeploymentSchedule",
    "FlowRun",
    "HeartbeatResult",
    "Holder",
    "Lease",
    "Limit",
    "LogLine",
    "LogRecord",
    "StateRecord",
    "StateType",
    "TaskRun",
    "TaskRunRecord",
    "Waiter",
    "WorkPool",
    "WorkQueue",
    "Worker",
    "to_jsonable",
    "ts_to_dt",
    "whole_slots",
]


# -- deployments, work pools, queues, workers ---------------------------------------------
@dataclass(frozen=True)
class DeploymentSchedule:
    """One schedule of a deployment: its stored form (``cron``/``interval``/``rrule``)."""

    id: str
    schedule: dict[str, Any]
    active: bool = True
    description: str = ""


@dataclass(frozen=True)
class Deployment:
    """A flow entrypoint with parameters, schedules, a work pool and an optional limit.

    ``full_name`` (``<flow>/<name>``) is what users type; the deployment's slot
    engine limit is ``deployment:<full_name>`` (``:<key>`` per concurrency key).
    """

    id: str
    name: str
    flow_name: str
    full_name: str
    entrypoint: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: What the flow accepts: ``names``, ``required``, ``var_keyword`` (checked on each run).
    parameter_schema: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    work_pool: str | None = None
    work_queue: str | None = None
    paused: bool = False
    concurrency_limit: int | None = None
    collision_strategy: str = "ENQUEUE"
    concurrency_key: str | None = None
    schedules: tuple[DeploymentSchedule, ...] = ()
    description: str = ""
    created: datetime | None = None
    updated: datetime | None = None
    #: A git repository workers check the code out of before each run (None: the
    #: code is in each worker's working directory); ``entrypoint`` is relative to its root.
    code_repository: str | None = None
    #: The branch, tag or commit of ``code_repository`` (None: its default branch).
    code_ref: str | None = None


@dataclass(frozen=True)
class WorkQueue:
    """A queue of a work pool: its runs are claimed in queue priority order (higher first)."""

    id: str
    pool: str
    name: str
    priority: int = 0
    paused: bool = False
    concurrency_limit: int | None = None
    #: Flow runs of this queue in PENDING or RUNNING.
    running: int = 0
    #: Flow runs of this queue due and waiting to start.
    waiting: int = 0
    created: datetime | None = None
    #: When the queue last changed (priority, paused, limit).
    updated: datetime | None = None


@dataclass(frozen=True)
class WorkPool:
    """Where workers take runs from; ``concurrency_limit`` caps its PENDING/RUNNING runs."""

    name: str
    #: A stable id besides the name (the name is the key everywhere else).
    id: str | None = None
    type: str = "process"
    paused: bool = False
    concurrency_limit: int | None = None
    running: int = 0
    waiting: int = 0
    description: str = ""
    queues: tuple[WorkQueue, ...] = ()
    created: datetime | None = None
    #: When the pool last changed (paused, limit).
    updated: datetime | None = None


@dataclass(frozen=True)
class Worker:
    """A worker process polling a pool, as last heard from."""

    name: str
    pool: str
    pid: int | None = None
    host: str | None = None
    last_heartbeat: datetime | None = None
    online: bool = True
    #: Flow runs this worker holds now.
    running: int = 0
    id: str | None = None


@dataclass(frozen=True)
class ClaimedRun:
    """A flow run a worker has just claimed (PENDING), with what it needs to start it."""

    run: FlowRun
    entrypoint: str | None
    lease_id: str | None
    lease_seconds: float


@dataclass(frozen=True)
class HeartbeatResult:
    """A worker's heartbeat answer: runs it no longer holds, runs it must cancel."""

    lost: tuple[str, ...] = ()
    cancelling: tuple[str, ...] = ()
