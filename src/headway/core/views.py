"""The facts an explanation is built from: read views of runs, waiters and queues.

The store reads them (``store/explain.py``) in one consistent snapshot; the
orchestrator (``orchestration/explain.py``) turns them into answers to "why is
this run waiting?".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from headway.core.events import LimitStats
from headway.core.models import Lease

#: Requests listed ahead of a run (the count is always exact).
MAX_LISTED = 10


@dataclass(frozen=True)
class RunClaim:
    """What a flow run's row says about where it stands in claiming."""

    id: str
    state_type: str
    state_name: str
    deployment: str | None
    work_pool: str | None
    work_queue: str | None
    priority: int
    expected_start: float | None
    created: float
    blocked_on: str | None
    concurrency_key: str | None
    worker_id: str | None
    lease_id: str | None


@dataclass(frozen=True)
class WaitRequest:
    """A live waiter row of one holder on one limit."""

    waiter_id: str
    limit_name: str
    seq: int
    slots: int
    priority: int
    holder_kind: str
    pid: int
    host: str
    since: datetime


@dataclass(frozen=True)
class Queued:
    """Someone waiting on a limit, ahead of the request being explained."""

    position: int
    holder_kind: str
    holder_id: str | None
    slots: int
    priority: int
    since: datetime
    pid: int | None = None
    host: str | None = None


@dataclass(frozen=True)
class QueuePlace:
    """A request's place in a limit's queue: its position and who is ahead."""

    #: 1 is next in line.
    position: int
    slots_ahead: int
    #: The first :data:`MAX_LISTED` ahead, in grant order.
    ahead: tuple[Queued, ...]
    #: Everyone waiting on the limit, this request included.
    waiting: int


@dataclass(frozen=True)
class LimitView:
    """A limit's counters and holders (oldest first)."""

    stats: LimitStats
    holders: tuple[Lease, ...]


@dataclass(frozen=True)
class WaitingRun:
    """A run (or holder) that waits now, for the status screen."""

    run_id: str | None
    kind: str
    name: str | None
    limit_name: str | None
    since: datetime
    detail: str


@dataclass(frozen=True)
class DeploymentUsage:
    """What a deployment's runs do now and have used lately."""

    active: int
    waiting: int
    due: int
    #: Tags of the deployment and of its recent task runs.
    task_tags: tuple[str, ...]
    #: Limits outside the deployment's own scopes its recent runs took slots of.
    limits_used: tuple[str, ...]
    recent_runs: int


__all__ = [
    "MAX_LISTED",
    "DeploymentUsage",
    "LimitView",
    "QueuePlace",
    "Queued",
    "RunClaim",
    "WaitRequest",
    "WaitingRun",
]
