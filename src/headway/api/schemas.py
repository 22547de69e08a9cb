"""Request models: pydantic models with bounds, turned into an operation's arguments.

Each operation of :mod:`headway.api.operations` names its body or query model
here. A model's fields are the operation's parameters by name
(:meth:`Body.to_args` turns them into the Orchestrator's arguments, nested
models into headway's own records). Responses are headway's records as
:func:`headway.core.models.to_jsonable` writes them; the HttpClient reads them
back into the same dataclasses.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from headway.core.bounds import EPOCH_MAX as EPOCH_MAX
from headway.core.bounds import EPOCH_MIN, INT32_MAX, INT64_MAX, check_time
from headway.core.deployments import DeploymentSpec
from headway.core.events import MAX_EVENTS
from headway.core.limits import ProcessInfo
from headway.core.models import LogRecord, TaskRunRecord
from headway.core.states import State, StateType, now

#: A run id (uuid-sized, as the store's columns are; no control characters: an id
#: with NUL would be stored changed on PostgreSQL and could meet another one).
RunId = Annotated[
    str, StringConstraints(min_length=1, max_length=36, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: Largest value of an integer column (PostgreSQL's ``integer``), and of a ``bigint``.
INT_MAX = INT32_MAX
BIGINT_MAX = INT64_MAX
#: Limits, slots, priorities: whole JSON numbers only ("3", 2.0 or true are refused,
#: as the Python API refuses them), within what an integer column holds (declared
#: in the OpenAPI document); the domain rules (a limit >= 1, ...) are the orchestrator's.
Count = Annotated[StrictInt, Field(ge=-INT_MAX, le=INT_MAX)]
#: A process id (an integer column) and a process start time (a bigint column).
Pid = Annotated[int, Field(ge=0, le=INT_MAX)]
ProcStart = Annotated[int, Field(ge=0, le=BIGINT_MAX)]


def _readable_time(value: datetime) -> datetime:
    return check_time(value, "timestamp")


#: A time the store can hold and read back: within years 1..9999 once in UTC
#: (``9999-12-31T23:59:59-14:00`` is refused: in UTC it is in year 10000).
Timestamp = Annotated[datetime, AfterValidator(_readable_time)]
#: Most records sent in one batch request (the HttpClient sends fewer).
MAX_BATCH = 10_000


class Body(BaseModel):
    """Base of every request body: unknown fields are errors, not silently dropped.

    Numbers are finite: NaN and Infinity (which Python's JSON reader accepts, and
    ``1e999`` becomes) are refused in every number field.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def to_args(self) -> dict[str, Any]:
        """The operation's arguments: each field by name, nested models as records."""
        return {name: _domain(getattr(self, name)) for name in type(self).model_fields}


class QueryModel(BaseModel):
    """Base of every query model: unknown parameters are ignored, as a web API does."""

    def to_args(self) -> dict[str, Any]:
        """The operation's arguments: each parameter by its Python name."""
        return {name: getattr(self, name) for name in type(self).model_fields}


def _domain(value: Any) -> Any:
    """A field's value as the Orchestrator takes it (``to_domain()`` of nested models)."""
    if isinstance(value, list):
        return [_domain(v) for v in value]
    to_domain = getattr(value, "to_domain", None)
    return value if to_domain is None else to_domain()


def aware(value: datetime | None) -> datetime:
    """An aware datetime (naive ones are taken as UTC); now when None."""
    if value is None:
        return now()
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class StateIn(Body):
    """A state as a client sends it."""

    type: StateType
    name: str = Field("", max_length=100)
    timestamp: Timestamp | None = None
    message: str | None = Field(None, max_length=20_000)

    def to_state(self) -> State:
        """The :class:`State` record."""
        return State(self.type, self.name, aware(self.timestamp), self.message)

    to_domain = to_state


class FlowRunCreate(Body):
    """``POST /flow_runs``."""

    id: RunId
    name: Name
    flow_name: Name
    state: StateIn
    parameters: dict[str, Any] = Field(default_factory=dict)
    deployment: str | None = Field(None, min_length=1, max_length=401)
    parent_task_run_id: RunId | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    pid: Pid | None = None
    host: str | None = Field(None, max_length=255)


class SetState(Body):
    """``POST /flow_runs/{id}/state``."""

    state: StateIn
    expect: list[StateType] | None = None

    def to_args(self) -> dict[str, Any]:
        """``state`` as a record; ``expect`` as a set."""
        expect = None if self.expect is None else frozenset(self.expect)
        return {"state": self.state.to_state(), "expect": expect}


class TaskRunRecordIn(Body):
    """One task run as the task engine reports it."""

    id: RunId
    flow_run_id: RunId | None = None
    name: Name
    task_key: str = Field(min_length=1, max_length=400)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    #: Seconds since the epoch, up to the end of year 9999 (what reads can show).
    created: float = Field(ge=EPOCH_MIN, le=EPOCH_MAX)
    states: list[StateIn] = Field(max_length=1_000)
    run_count: int = Field(0, ge=0, le=INT_MAX)

    def to_record(self) -> TaskRunRecord:
        """The store's record."""
        return TaskRunRecord(
            id=self.id,
            flow_run_id=self.flow_run_id,
            name=self.name,
            task_key=self.task_key,
            tags=tuple(self.tags),
            created=self.created,
            states=tuple(s.to_state() for s in self.states),
            run_count=self.run_count,
        )

    to_domain = to_record


class TaskRunBatch(Body):
    """``POST /task_runs/batch``."""

    records: list[TaskRunRecordIn] = Field(max_length=MAX_BATCH)


class LogRecordIn(Body):
    """One log line."""

    flow_run_id: RunId | None = None
    task_run_id: RunId | None = None
    level: int = Field(ge=0, le=100)
    level_name: str = Field("", max_length=50)
    logger: str = Field(min_length=1, max_length=200)
    message: str = Field(max_length=1_000_000)
    timestamp: Timestamp

    def to_record(self) -> LogRecord:
        """The store's record."""
        return LogRecord(
            self.flow_run_id,
            self.task_run_id,
            self.level,
            self.level_name or logging.getLevelName(self.level),
            self.logger,
            self.message,
            aware(self.timestamp),
        )

    to_domain = to_record


class LogBatch(Body):
    """``POST /logs/batch``."""

    records: list[LogRecordIn] = Field(max_length=MAX_BATCH)


# -- limits and slots ------------------------------------------------------------------
# Bounds here only keep requests small; the domain rules (limit >= 1, name length,
# ...) and their messages live in ``headway.core.limits``, the same on every backend.
LimitName = Annotated[str, StringConstraints(max_length=1_000)]


class LimitCreate(Body):
    """``POST /limits``."""

    name: LimitName
    limit: Count
    active: bool = True
    slot_decay_per_second: float = 0.0
    active_slots: Count = 0


class LimitUpdate(Body):
    """``PATCH /limits/{name}``: only the fields given change."""

    limit: Count | None = None
    active: bool | None = None
    slot_decay_per_second: float | None = None
    active_slots: Count | None = None


class ProcessIn(Body):
    """The process that will hold the slots (recorded on its lease)."""

    pid: Pid
    host: str = Field(max_length=255)
    node: str | None = Field(None, max_length=100)
    proc_start: ProcStart = 0

    def to_domain(self) -> ProcessInfo:
        """The lease's :class:`ProcessInfo`."""
        return ProcessInfo(self.pid, self.host, self.node, self.proc_start)


class AcquireSlots(Body):
    """``POST /slots/acquire``: one request for slots, held up to ``timeout`` seconds."""

    names: list[LimitName] = Field(max_length=100)
    slots: Count = 1
    mode: str = Field("concurrency", max_length=20)
    priority: Count = 0
    holder_kind: str = Field("code", max_length=20)
    holder_id: str | None = Field(None, max_length=100)
    process: ProcessIn | None = None
    lease_seconds: float | None = None
    #: Seconds to hold the request; null or above the server's cap: the cap.
    timeout: float | None = Field(0.0, ge=0)
    waiter_id: str | None = Field(None, min_length=1, max_length=36)
    strict: bool = False


class WaiterRef(Body):
    """``POST /slots/cancel``."""

    waiter_id: str = Field(min_length=1, max_length=36)


class LeaseRef(Body):
    """``POST /slots/release``."""

    lease_id: str = Field(min_length=1, max_length=36)


class RenewLeases(Body):
    """``POST /slots/renew``."""

    lease_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=36)]] = Field(
        max_length=MAX_BATCH
    )
    lease_seconds: float | None = None


# -- work pools, queues, deployments, workers --------------------------------------------
# As for limits, names are only bounded here; their rules live in core.deployments.
ObjName = Annotated[str, StringConstraints(max_length=500)]


class WorkPoolCreate(Body):
    """``POST /work_pools``."""

    name: ObjName
    concurrency_limit: Count | None = None
    description: str = Field("", max_length=10_000)


class PausedUpdate(Body):
    """``PATCH`` of a pool or deployment: pause or resume."""

    paused: bool | None = None


class ConcurrencyLimitSet(Body):
    """``PUT .../concurrency_limit``: a limit, or null to clear it."""

    limit: Count | None = None


class WorkQueueCreate(Body):
    """``POST /work_pools/{pool}/queues``."""

    name: ObjName
    priority: Count = 0
    concurrency_limit: Count | None = None


class WorkQueueUpdate(Body):
    """``PATCH /work_pools/{pool}/queues/{name}``."""

    priority: Count | None = None
    paused: bool | None = None


class DeploymentSpecIn(Body):
    """``POST /deployments``: create or update ``<flow_name>/<name>``."""

    flow_name: ObjName
    name: ObjName
    entrypoint: str | None = Field(None, max_length=4_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_schema: dict[str, Any] | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    work_pool: ObjName | None = None
    work_queue: ObjName | None = None
    paused: bool = False
    schedules: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    concurrency_limit: Count | None = None
    collision_strategy: str = Field("ENQUEUE", max_length=50)
    concurrency_key: str | None = Field(None, max_length=1_000)
    description: str = Field("", max_length=10_000)
    code_repository: str | None = Field(None, max_length=4_000)
    code_ref: str | None = Field(None, max_length=400)

    def to_args(self) -> dict[str, Any]:
        """The whole body is the one argument, ``spec``."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields["tags"] = tuple(self.tags)
        fields["schedules"] = tuple(self.schedules)
        return {"spec": DeploymentSpec(**fields)}


class DeploymentLimitSet(Body):
    """``PUT /deployments/{name}/concurrency_limit``."""

    limit: Count | None = None
    collision_strategy: str | None = Field(None, max_length=50)
    concurrency_key: str | None = Field(None, max_length=1_000)


class DeploymentRunCreate(Body):
    """``POST /deployments/{name}/runs``."""

    parameters: dict[str, Any] | None = None
    scheduled_time: Timestamp | None = None
    priority: Count = 0
    flow_run_name: Name | None = None
    tags: list[Tag] | None = Field(None, max_length=100)

    def to_args(self) -> dict[str, Any]:
        """A naive ``scheduled_time`` is taken as UTC."""
        scheduled = None if self.scheduled_time is None else aware(self.scheduled_time)
        return {
            "parameters": self.parameters,
            "scheduled_time": scheduled,
            "priority": self.priority,
            "flow_run_name": self.flow_run_name,
            "tags": None if self.tags is None else tuple(self.tags),
        }


class CancelRun(Body):
    """``POST /flow_runs/{id}/cancel``."""

    message: str | None = Field(None, max_length=10_000)


class WorkerRegister(Body):
    """``POST /workers``."""

    pool: str = Field(max_length=500)
    name: ObjName
    pid: Pid | None = None
    host: str | None = Field(None, max_length=255)


class Heartbeat(Body):
    """``POST /workers/{id}/heartbeat``."""

    run_ids: list[RunId] = Field(default_factory=list, max_length=MAX_BATCH)


class ClaimRuns(Body):
    """``POST /workers/{id}/claim``."""

    pool: ObjName | None = None
    queues: list[ObjName] | None = Field(None, max_length=1_000)
    deployments: list[ObjName] | None = Field(None, max_length=1_000)
    limit: Count = 1
    #: Seconds to hold the request for a run (capped by the server).
    wait: float = Field(0.0, ge=0)
    process: ProcessIn | None = None


# -- query parameters --------------------------------------------------------------------
class FlowRunRead(QueryModel):
    """``GET /flow_runs/{run_id}``."""

    with_task_runs: bool = False


class FlowRunsQuery(QueryModel):
    """``GET /flow_runs``: newest first, filtered (``state`` may be repeated)."""

    limit: int = Field(20, ge=1, le=10_000)
    offset: int = Field(0, ge=0, le=INT_MAX)
    states: list[StateType] | None = Field(None, alias="state")
    deployment: str | None = Field(None, max_length=401)
    flow_name: str | None = Field(None, max_length=200)


class LogsQuery(QueryModel):
    """``GET /flow_runs/{flow_run_id}/logs``."""

    after_id: int = Field(0, ge=0, le=BIGINT_MAX)


class LimitRead(QueryModel):
    """``GET /limits/{name}``: ``detail=true`` also lists holders and waiters (inspect)."""

    detail: bool = False


class PrefixQuery(QueryModel):
    """Limits whose names start with ``prefix``."""

    prefix: str | None = Field(None, max_length=1_000)


class ForceQuery(QueryModel):
    """``DELETE /limits/{name}``: ``force=true`` deletes a limit that has holders."""

    force: bool = False


class PoolQuery(QueryModel):
    """Queues or workers of one pool."""

    pool: str | None = Field(None, max_length=500)


class DeploymentsQuery(QueryModel):
    """``GET /deployments``."""

    work_pool: str | None = Field(None, max_length=500)
    flow_name: str | None = Field(None, max_length=500)


class EventsQuery(QueryModel):
    """``GET /events``: ``after`` (a page's cursor) returns later events only."""

    run_id: str | None = Field(None, max_length=100)
    limit_name: str | None = Field(None, max_length=1_000)
    since: datetime | None = None
    kind: str | None = Field(None, max_length=100)
    after: str | None = Field(None, max_length=100)
    limit: int = Field(100, ge=1, le=MAX_EVENTS)
