"""What headway answers when asked why a run waits, how a deployment is limited, how it fares.

Plain records (returned by every client, turned into JSON by ``to_jsonable``)
and the one estimate they carry, a pure function: when a waiting request will
likely start, from the limit's current holders, the requests ahead of it and
the limit's average hold time. The queries behind the answers are in
``store/explain.py``; the orchestrator assembles them in
``orchestration/explain.py``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from headway.core.events import LimitStats
from headway.core.limits import seconds_until_room
from headway.core.models import Worker
from headway.core.states import State

#: Past this many requests ahead, the estimate uses the limit's throughput, not a replay.
_REPLAY_MAX = 10_000


@dataclass(frozen=True)
class HolderInfo:
    """Who holds slots of a limit: the run (or code) and its process, since when."""

    kind: str
    run_id: str | None
    name: str | None
    slots: int
    pid: int
    host: str
    since: datetime
    lease_id: str


@dataclass(frozen=True)
class AheadInfo:
    """A request queued ahead, in grant order."""

    position: int
    kind: str
    run_id: str | None
    name: str | None
    slots: int
    priority: int
    since: datetime


@dataclass(frozen=True)
class Blocker:
    """One limit in the way of a run, and the run's place in its queue."""

    limit_name: str
    scope: str
    limit: int
    active_slots: float
    slot_decay_per_second: float
    active: bool
    holders: tuple[HolderInfo, ...]
    #: Every holder (``holders`` lists the oldest ones).
    holder_count: int
    #: 1 is next in line.
    position: int
    waiters_ahead: int
    ahead: tuple[AheadInfo, ...]
    #: Everyone waiting on this limit.
    waiting: int
    #: Slots the run asks for, its priority, and since when it waits.
    slots: int
    priority: int
    waiting_since: datetime | None
    #: What happens to a request that finds this limit full.
    strategy: str
    average_hold_seconds: float | None
    average_occupancy: float
    estimated_start: datetime | None
    #: How the estimate was made, or why there is none.
    estimate: str

    @property
    def closed(self) -> bool:
        """Whether the limit is 0 and applies: nothing is admitted until it is raised."""
        return self.active and self.limit == 0


@dataclass(frozen=True)
class HeldSlots:
    """Slots a run holds now."""

    limit_name: str
    slots: int
    since: datetime
    lease_id: str


@dataclass(frozen=True)
class PastWait:
    """Something a run waited for, and how long."""

    what: str
    limit_name: str | None
    seconds: float
    until: datetime


@dataclass(frozen=True)
class RunExplanation:
    """The answer to ``headway why RUN_ID``."""

    run_id: str
    #: ``flow_run``, ``task_run``, or ``holder`` (an id known only from its slots).
    kind: str
    name: str | None
    state: State | None
    deployment: str | None
    waiting: bool
    #: Whether any limit applies to the run at all (False: the unlimited default).
    limited: bool
    summary: str
    details: tuple[str, ...] = ()
    blockers: tuple[Blocker, ...] = ()
    holds: tuple[HeldSlots, ...] = ()
    estimated_start: datetime | None = None
    waited: tuple[PastWait, ...] = ()
    total_wait_seconds: float | None = None


@dataclass(frozen=True)
class PolicyLayer:
    """One layer of a deployment's concurrency policy."""

    layer: str
    name: str | None
    limit_name: str | None
    #: None: unlimited.
    limit: int | None
    active_slots: float | None = None
    waiting: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class DeploymentExplanation:
    """The answer to ``headway concurrency explain DEPLOYMENT``."""

    deployment: str
    layers: tuple[PolicyLayer, ...]
    collision_strategy: str
    concurrency_key: str | None
    #: What happens when its schedule fires while a run is active.
    on_collision: str
    active_runs: int
    waiting_runs: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WaitingEntry:
    """A run (or holder) held back by a limit now."""

    run_id: str | None
    kind: str
    name: str | None
    limit_name: str | None
    since: datetime
    detail: str


@dataclass(frozen=True)
class StatusReport:
    """One screen of ``headway status``."""

    generated: datetime
    runs_by_state: dict[str, int]
    #: Busiest limits first (waiters, then occupancy).
    limits: tuple[LimitStats, ...]
    waiting: tuple[WaitingEntry, ...]
    #: Workers heard from recently, most recent first.
    workers: tuple[Worker, ...] = field(default_factory=tuple)


def estimate_start(
    *,
    now: float,
    limit: int,
    active_slots: float,
    decay_per_second: float,
    holders: Sequence[tuple[float, int]],
    ahead: Sequence[int],
    slots_ahead: int,
    occupy: int,
    average_hold: float | None,
) -> tuple[float | None, str]:
    """Seconds from ``now`` until a request of ``occupy`` slots likely starts, and how.

    ``holders`` are ``(since, slots)`` of the current leases; ``ahead`` the slots
    of the requests listed ahead (``slots_ahead`` counts all of them). A rate
    limit starts the request when enough has decayed. Otherwise the queue is
    replayed: each holder lets go ``average_hold`` after it took its slots (at
    once if it is already past that), and each request ahead takes its slots
    in turn for ``average_hold``. Returns None, with the reason, when there is
    nothing to go on.
    """
    if limit == 0:
        return None, "the limit is 0: nothing is admitted until it is raised"
    if occupy > limit:
        return None, f"it asks {occupy} slot(s), more than the limit's {limit}"
    if decay_per_second > 0:
        wait = seconds_until_room(active_slots, limit, slots_ahead + occupy, decay_per_second)
        if wait is None:
            return None, "the limit does not decay"
        return wait, f"rate limit: {decay_per_second:g} slot(s) drain per second"
    if average_hold is None:
        return None, "no estimate yet: no slot of this limit has been given back"
    queue = list(ahead)
    rest = slots_ahead - sum(queue)
    if rest > 0 and len(queue) + rest <= _REPLAY_MAX:
        queue += [1] * rest  # requests not listed: assume one slot each
    elif rest > 0:
        # A very long queue: its slots go through the limit at its throughput.
        turns = (slots_ahead + occupy) / max(limit, 1)
        return turns * average_hold, (
            f"{slots_ahead} slot(s) ahead pass through {limit} slot(s) held"
            f" {average_hold:.3g}s on average"
        )
    free = max(0.0, limit - active_slots)
    ends = [(max(now, since + average_hold), slots) for since, slots in holders]
    heapq.heapify(ends)
    t = now
    for need in [*queue, occupy]:
        while free + 1e-9 < need:
            if not ends:
                return None, (
                    f"{active_slots:g} slot(s) are taken without a lease (set by hand):"
                    " they are not given back by themselves"
                )
            end, slots = heapq.heappop(ends)
            t = max(t, end)
            free += slots
        free -= need
        heapq.heappush(ends, (t + average_hold, need))
    note = f"from the average hold time of {average_hold:.3g}s"
    if any(since + average_hold < now for since, _ in holders):
        note += "; some holders already hold longer than average"
    return t - now, note


__all__ = [
    "AheadInfo",
    "Blocker",
    "DeploymentExplanation",
    "HeldSlots",
    "HolderInfo",
    "PastWait",
    "PolicyLayer",
    "RunExplanation",
    "StatusReport",
    "WaitingEntry",
    "estimate_start",
]
