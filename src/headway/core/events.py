"""What headway recorded, as readers see it: events, histograms and limit counters.

The store writes them (``store/events.py``); these are the records it hands
out, and the pure rules readers share: the histogram buckets and the event
feed's cursor.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import datetime

from headway.core.bounds import INT64_MAX
from headway.exceptions import ValidationError

#: Upper bounds of every histogram's buckets, in seconds.
HISTOGRAM_BOUNDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0, math.inf,
)  # fmt: skip
#: The histogram of how long requests waited for slots, per limit.
SLOT_WAIT = "slot_wait"
#: The histogram of how long due runs waited to be claimed, per work pool.
CLAIM_LATENCY = "claim_latency"
#: Most events one read returns.
MAX_EVENTS = 10_000


@dataclass(frozen=True)
class Event:
    """One recorded happening: a slot granted, a lease reaped, a state change, ..."""

    #: ``e<n>`` for a row of ``events``, ``s<n>`` for a state change.
    id: str
    timestamp: datetime
    kind: str
    run_id: str | None = None
    limit_name: str | None = None
    slots: int | None = None
    seconds: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class EventPage:
    """Events in time order, and the cursor to ask for the ones after them."""

    events: tuple[Event, ...]
    cursor: str


@dataclass(frozen=True)
class Histogram:
    """One labelled histogram: cumulative ``(upper bound, count)`` buckets, count, sum."""

    label: str
    buckets: tuple[tuple[float, int], ...]
    count: int
    total: float


@dataclass(frozen=True)
class LimitStats:
    """A limit with its counters since it was created."""

    name: str
    limit: int
    active: bool
    active_slots: float
    slot_decay_per_second: float
    waiters: int
    holders: int
    grants: int
    denials: int
    expiries: int
    releases: int
    total_wait_seconds: float
    total_hold_seconds: float
    created: datetime
    #: Slots occupied on average since the limit was created (slot-seconds / seconds).
    average_occupancy: float
    #: The share of the limit held while anyone waited, over the last minute
    #: (core.limits.UTILIZATION_WINDOW_SECONDS); None when nobody waited then,
    #: or for a rate limit.
    utilization_while_waiting: float | None = None

    @property
    def average_hold_seconds(self) -> float | None:
        """Mean time a lease held its slots, from the leases given back; None before any."""
        return self.total_hold_seconds / self.releases if self.releases else None

    @property
    def average_wait_seconds(self) -> float | None:
        """Mean wait of a granted request (0 for those granted at once); None before any."""
        return self.total_wait_seconds / self.grants if self.grants else None

    @property
    def scope(self) -> str:
        """``tag``, ``deployment``, ``pool``, ``queue`` or ``global``."""
        prefix, sep, _ = self.name.partition(":")
        return prefix if sep and prefix in {"tag", "deployment", "pool", "queue"} else "global"


def bucket_of(value: float) -> float:
    """The upper bound of the bucket ``value`` falls in."""
    return HISTOGRAM_BOUNDS[bisect.bisect_left(HISTOGRAM_BOUNDS, max(0.0, value))]


def add_zero_observations(hist: Histogram, count: int) -> Histogram:
    """``hist`` with ``count`` more observations of 0 (requests granted without waiting)."""
    if count <= 0:
        return hist
    return Histogram(
        hist.label, tuple((le, n + count) for le, n in hist.buckets), hist.count + count, hist.total
    )


def empty_histogram(label: str) -> Histogram:
    """A histogram with no observations."""
    return Histogram(label, tuple((le, 0) for le in HISTOGRAM_BOUNDS), 0, 0.0)


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    """``"e<event id>.s<state id>"`` -> the two ids; ValidationError for anything else."""
    if cursor is None:
        return None
    try:
        ev, st = cursor.split(".")
        if ev[0] != "e" or st[0] != "s":
            raise ValueError(cursor)
        ids = int(ev[1:]), int(st[1:])
        # Row ids are bigints: a larger one cannot be compared with them in SQL.
        if not all(0 <= i <= INT64_MAX for i in ids):
            raise ValueError(cursor)
        return ids
    except (ValueError, IndexError):
        raise ValidationError(f"invalid event cursor {cursor!r}") from None


def event_cursor(events_id: int, states_id: int) -> str:
    """The cursor that :func:`parse_cursor` reads back as these two ids."""
    return f"e{events_id}.s{states_id}"


__all__ = [
    "CLAIM_LATENCY",
    "HISTOGRAM_BOUNDS",
    "MAX_EVENTS",
    "SLOT_WAIT",
    "Event",
    "EventPage",
    "Histogram",
    "LimitStats",
    "add_zero_observations",
    "bucket_of",
    "empty_histogram",
    "event_cursor",
    "parse_cursor",
]
