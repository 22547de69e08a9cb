"""How the explanations say things: durations, occupancy, holders, collisions, past waits.

Pure phrasing over the records the store read (``orchestration/explain.py``
builds the answers and calls these); nothing here reads the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from headway.core.deployments import CANCEL_IN_PROGRESS, CANCEL_NEW
from headway.core.events import Event, LimitStats
from headway.core.models import Deployment, Lease, ts_to_dt
from headway.core.states import AWAITING_CONCURRENCY_SLOT, State, StateType
from headway.explain import HolderInfo, PastWait


def dt(ts: float) -> datetime:
    # An estimate can lie past year 9999 (a rate limit decaying a slot a decade).
    return ts_to_dt(ts) or datetime.fromtimestamp(0, UTC)


def scope(name: str) -> str:
    prefix, sep, _ = name.partition(":")
    return prefix if sep and prefix in {"tag", "deployment", "pool", "queue"} else "global"


def fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return str(timedelta(seconds=round(seconds)))


def holder(lease: Lease, names: dict[str, str]) -> HolderInfo:
    slots = next(iter(lease.slots.values()), 0)
    h = lease.holder
    return HolderInfo(
        h.kind, h.id, names.get(h.id or ""), slots, h.pid, h.host, lease.created, lease.id
    )


def occupancy(stat: LimitStats) -> str:
    taken = stat.active_slots
    shown = str(int(taken)) if abs(taken - round(taken)) < 1e-9 else f"{taken:.2f}"
    return f"{shown}/{stat.limit}"


def on_collision(dep: Deployment) -> str:
    """What happens when a run of ``dep`` becomes due while others are active."""
    if dep.concurrency_limit is None:
        return (
            "the new run starts alongside the active ones (no deployment limit: runs overlap,"
            " the default); only a work pool or queue limit can hold it back"
        )
    per = f" per value of {dep.concurrency_key!r}" if dep.concurrency_key else ""
    full = f"once {dep.concurrency_limit} run(s){per} are active"
    if dep.collision_strategy == CANCEL_NEW:
        return f"{full}, the new run is cancelled at once (CANCEL_NEW)"
    if dep.collision_strategy == CANCEL_IN_PROGRESS:
        return (
            f"{full}, the active runs are cancelled and the new run starts when they have"
            " stopped (CANCEL_IN_PROGRESS)"
        )
    return (
        f"{full}, the new run waits as Scheduled/AwaitingConcurrencySlot and starts when one"
        " ends, in order of priority then scheduled time (ENQUEUE)"
    )


#: What a limit of 0 means for the runs that wait on it.
CLOSED = "is 0: nothing is admitted until it is raised"


def deployment_applies(
    name: str, deployment: Deployment | None, row: LimitStats | None
) -> tuple[str, bool]:
    """The line of ``why`` on a run's deployment limit, and whether one is set.

    ``row`` is the deployment's limit in the slot engine: what applies, when it
    was changed by hand (``gcl update deployment:<flow>/<name> --limit 0``).
    """
    if deployment is None or deployment.concurrency_limit is None:
        return f"deployment {name!r}: no concurrency limit", False
    value = deployment.concurrency_limit
    if row is not None and row.active and not deployment.concurrency_key:
        value = row.limit
    return f"deployment {name!r}: limit {value}, strategy {deployment.collision_strategy}", True


AWAITED_LIMIT = re.compile(r"slot of limit '([^']+)'")


def awaited(message: str) -> str | None:
    """The limit a claim's "waiting for a slot of limit '...'" message names."""
    found = AWAITED_LIMIT.search(message)
    return found.group(1) if found else None


def past_waits(
    events: Sequence[Event], states: Sequence[State]
) -> tuple[tuple[PastWait, ...], float | None]:
    """What a run waited for and how long in all, from its events and state history.

    Slot waits come from its grants; a deployment run also waited from due to
    claimed (its claim event), which includes any time it spent
    AwaitingConcurrencySlot (listed on its own, from its states). The total is
    the slot waits plus the claim wait (or the awaiting periods, without a claim).
    """
    slots = [
        PastWait("slot", e.limit_name, float(e.seconds), e.timestamp)
        for e in events
        if e.kind == "slot.granted" and e.seconds
    ]
    claims = [
        PastWait("claim", e.limit_name, float(e.seconds), e.timestamp)
        for e in events
        if e.kind == "flow_run.claimed" and e.seconds is not None
    ]
    awaiting: list[PastWait] = []
    begun: State | None = None
    for s in states:
        if s.type is StateType.SCHEDULED and s.name == AWAITING_CONCURRENCY_SLOT:
            begun = begun or s
        elif begun is not None and s.type is not StateType.SCHEDULED:
            seconds = (s.timestamp - begun.timestamp).total_seconds()
            limit = awaited(begun.message or "")
            awaiting.append(PastWait(AWAITING_CONCURRENCY_SLOT, limit, seconds, s.timestamp))
            begun = None
    waits = sorted(slots + awaiting + claims, key=lambda w: w.until)
    if not waits:
        return (), None
    total = sum(w.seconds for w in slots) + sum(w.seconds for w in (claims or awaiting))
    return tuple(waits), total


__all__ = [
    "CLOSED",
    "awaited",
    "deployment_applies",
    "dt",
    "fmt_seconds",
    "holder",
    "occupancy",
    "on_collision",
    "past_waits",
    "scope",
]
