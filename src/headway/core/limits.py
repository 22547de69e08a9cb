"""Slot arithmetic: capacity, decay, grant order, lease expiry. Pure: no I/O.

Every limit of every scope follows the same rules, decided here and applied by
the store inside one transaction:

- **Room.** ``n`` more slots fit when ``active_slots + n <= limit``, where a
  rate limit's ``active_slots`` first drains at ``slot_decay_per_second``.
- **Never.** A request no room could ever admit is refused at once rather
  than queued: more slots than the limit (ValidationError), or any request on
  an active limit of 0 (LimitClosed: a kill switch, as in Prefect). Unknown and
  inactive limits admit everything.
- **Order.** Requests queue FIFO within priority: request *a* is ahead of *b*
  when it has a higher priority, or the same priority and a lower sequence
  number. A request is granted only when it fits on every named limit *and* no
  live request ahead of it waits on any of them, so a 3-slot request is never
  starved by 1-slot requests that came later (no barging).
- **Leases.** A grant lives until released or until its lease expires; holders
  renew at a third of the lease so one missed renewal is never fatal.

The record types at the bottom are the slot engine's plain data, shared by the
store, the orchestrator, every client and the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from headway.core.bounds import check_pid, check_proc_start
from headway.core.models import Lease, Limit, Waiter
from headway.core.utilization import Utilization
from headway.exceptions import LimitClosed, ValidationError

#: Longest limit name (and tag) accepted.
NAME_MAX = 200
#: Longest host name recorded with a process (the column's width).
HOST_MAX = 255
#: Largest limit (and occupy) accepted: far above any real use, far below overflow.
LIMIT_MAX = 1_000_000_000
#: Tolerance of float slot counts (rate limits decay continuously).
EPSILON = 1e-9
#: Sequence number of a request that is not queued yet: behind every queued one.
NOT_QUEUED = 2**62
#: Scopes other than global, as name prefixes ``<scope>:``.
SCOPED_PREFIXES = ("tag", "deployment", "pool", "queue")
TAG_PREFIX = "tag:"

#: ``concurrency`` takes slots held by a lease and given back; ``rate`` takes
#: tokens of a decaying limit that are never given back.
Mode = Literal["concurrency", "rate"]
MODES: tuple[Mode, ...] = ("concurrency", "rate")

#: Who may hold a lease (``deployment`` is Prefect's holder type, given by code).
HOLDER_KINDS = ("code", "task_run", "flow_run", "deployment")

# Wait between re-checks when no notification comes: short first, then capped,
# so a lost wake-up costs at most this much and an idle waiter costs little.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25
POLL_GROWTH = 1.5


# -- validation -----------------------------------------------------------------------
def validate_name(name: object, what: str = "limit name") -> str:
    """A limit name: a non-empty string of at most NAME_MAX characters, no control chars."""
    if not isinstance(name, str):
        raise ValidationError(f"{what} must be a string, got {type(name).__name__}")
    if len(name) > NAME_MAX:
        raise ValidationError(f"{what} is {len(name)} characters long; the maximum is {NAME_MAX}")
    if not name.isprintable() or name != name.strip() or not name:
        if not name.strip():
            raise ValidationError(f"{what} must not be empty")
        if name != name.strip():
            raise ValidationError(f"{what} {name!r} has leading or trailing spaces")
        raise ValidationError(f"{what} {name!r} contains control or invisible characters")
    return name


def validate_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """One name or several: validated, duplicates removed, sorted (the lock order)."""
    if isinstance(names, str):
        return (validate_name(names),)
    items = list(names)
    if not items:
        raise ValidationError("at least one limit name is required")
    return tuple(sorted({validate_name(n) for n in items}))


def tag_limit_name(tag: object) -> str:
    """The limit name of a task tag: ``tag:<tag>``."""
    return TAG_PREFIX + validate_name(tag, "tag")


def _whole(value: object, what: str, low: int, high: int = LIMIT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number, got {value!r}")
    if value < low or value > high:
        raise ValidationError(f"{what} must be between {low} and {high}, got {value}")
    return value


def validate_limit(value: object) -> int:
    """A limit: a whole number of slots, at least 0 (0 admits nothing: a kill switch)."""
    return _whole(value, "limit", 0)


def validate_active_slots(value: object) -> int:
    """A manually set count of occupied slots: a whole number, at least 0."""
    return _whole(value, "active slots", 0)


def validate_occupy(value: object) -> int:
    """Slots one request takes: a whole number, at least 1."""
    return _whole(value, "occupy", 1)


def validate_priority(value: object) -> int:
    """A request's priority: any whole number (higher goes first)."""
    return _whole(value, "priority", -LIMIT_MAX)


#: Smallest non-zero decay: one slot back every ~32 years. Below it the wait for
#: a token (``slots / decay``) grows past what a number of seconds can hold
#: (``5e-324`` made it Infinity, which is not JSON).
DECAY_MIN = 1e-9


def validate_decay(value: object) -> float:
    """Slots drained per second (0: a plain concurrency limit; > 0: a rate limit)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"slot decay per second must be a number, got {value!r}")
    decay = float(value)
    if not math.isfinite(decay) or decay < 0 or decay > LIMIT_MAX or 0 < decay < DECAY_MIN:
        raise ValidationError(
            f"slot decay per second must be 0 or between {DECAY_MIN:g} and {LIMIT_MAX}"
        )
    return decay


def validate_timeout(value: object) -> float | None:
    """A wait bound in seconds (None waits until granted)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValidationError(f"timeout_seconds must be a number or None, got {value!r}")
    if value < 0:
        raise ValidationError(f"timeout_seconds must be at least 0, got {value}")
    return float(value)


#: Longest lease one request may ask for: holders renew, so this only bounds how
#: far ahead an expiry is written (a far one would not fit a timestamp when read).
LEASE_MAX_SECONDS = 30 * 24 * 3600.0


def validate_lease_seconds(value: object) -> float:
    """A lease duration in seconds, greater than 0 and at most :data:`LEASE_MAX_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"lease seconds must be a number, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"lease seconds must be greater than 0, got {value}")
    if seconds > LEASE_MAX_SECONDS:
        raise ValidationError(
            f"lease seconds must be at most {LEASE_MAX_SECONDS:g} (30 days), got {value}"
        )
    return seconds


def closed_reason(name: str) -> str:
    """Why nothing is admitted on ``name``, a limit of 0."""
    if name.startswith(TAG_PREFIX):
        return (
            f"the concurrency limit on tag {name[len(TAG_PREFIX) :]!r} is 0: nothing is"
            " admitted until it is raised"
        )
    return f"limit {name!r} is 0: nothing is admitted until it is raised"


def check_occupy_fits(name: str, occupy: int, limit: int) -> None:
    """A request the limit can never admit is refused now, not left to hang.

    A limit of 0 admits nothing (LimitClosed: the request is fine, the limit is
    shut); a request for more slots than a limit has is invalid (ValidationError).
    """
    if limit == 0:
        raise LimitClosed(closed_reason(name))
    if occupy > limit:
        raise ValidationError(
            f"cannot occupy {occupy} slots of limit {name!r}: its limit is {limit}"
        )


# -- capacity ---------------------------------------------------------------------------
def decayed(active_slots: float, decay_per_second: float, decayed_at: float, now: float) -> float:
    """Occupied slots at ``now`` after draining at ``decay_per_second`` since ``decayed_at``."""
    if decay_per_second <= 0 or now <= decayed_at:
        return active_slots
    return max(0.0, active_slots - decay_per_second * (now - decayed_at))


def has_room(active_slots: float, limit: int, n: int) -> bool:
    """Whether ``n`` more slots fit under ``limit``."""
    return active_slots + n <= limit + EPSILON


def seconds_until_room(
    active_slots: float, limit: int, need: float, decay_per_second: float
) -> float | None:
    """How long until ``need`` slots fit by decay alone; None when nothing decays."""
    excess = active_slots + need - limit
    if excess <= EPSILON:
        return 0.0
    if decay_per_second <= 0:
        return None
    return excess / decay_per_second


def released(active_slots: float, n: float) -> float:
    """Occupied slots after giving ``n`` back (never below 0: decay may have drained them)."""
    return max(0.0, active_slots - n)


# -- grant order ------------------------------------------------------------------------
def queue_key(priority: int, seq: int) -> tuple[int, int]:
    """Sort key of a request: higher priority first, then lower sequence (FIFO)."""
    return (-priority, seq)


def is_ahead(priority: int, seq: int, other_priority: int, other_seq: int) -> bool:
    """Whether the request (priority, seq) is ahead of (other_priority, other_seq)."""
    return queue_key(priority, seq) < queue_key(other_priority, other_seq)


@dataclass(frozen=True)
class LimitState:
    """A limit as one decision sees it (``active_slots`` already decayed to now)."""

    name: str
    limit: int
    active: bool
    active_slots: float
    decay_per_second: float

    @property
    def free(self) -> float:
        """Slots free now."""
        return max(0.0, self.limit - self.active_slots)


@dataclass(frozen=True)
class Decision:
    """What to do with one request: grant it, or let it wait and why."""

    grant: bool
    #: Names that take slots when granted (known and active).
    limited: tuple[str, ...]
    unknown: tuple[str, ...]
    inactive: tuple[str, ...]
    #: Why the request waits, one phrase per blocking limit.
    reasons: tuple[str, ...] = ()
    #: Limits on which the request is blocked (full, or someone ahead).
    blocked: tuple[str, ...] = ()
    #: A rate limit's computed wait until enough has decayed; None: wait for a release.
    retry_after: float | None = None


def decide(
    names: Sequence[str],
    occupy: int,
    mode: Mode,
    states: Mapping[str, LimitState],
    ahead: Mapping[str, tuple[int, int]],
) -> Decision:
    """Grant or wait for a request on ``names`` (known limits in ``states``).

    ``ahead`` gives, per limit, how many live requests are queued ahead of this
    one and how many slots they want. Raises ValidationError for a request that
    could never be granted (more slots than the limit, tokens of a plain limit),
    and LimitClosed when an active limit among ``names`` is 0.
    """
    limited: list[str] = []
    unknown: list[str] = []
    inactive: list[str] = []
    for name in names:
        state = states.get(name)
        if state is None:
            unknown.append(name)
        elif not state.active:
            inactive.append(name)
        else:
            check_occupy_fits(name, occupy, state.limit)
            if mode == "rate" and state.decay_per_second <= 0:
                raise ValidationError(
                    f"limit {name!r} has no slot decay, so rate_limit() could never get"
                    " tokens back; give it --slot-decay-per-second or use concurrency()"
                )
            limited.append(name)
    reasons: list[str] = []
    blocked: list[str] = []
    retry_after: float | None = None
    for name in limited:
        state = states[name]
        queued, slots_ahead = ahead.get(name, (0, 0))
        if queued:
            blocked.append(name)
            reasons.append(f"{queued} request(s) ahead on {name!r}")
        elif not has_room(state.active_slots, state.limit, occupy):
            blocked.append(name)
            reasons.append(
                f"{name!r} is full ({_fmt(state.active_slots)}/{state.limit} slots taken,"
                f" {occupy} needed)"
            )
        if name in blocked and state.decay_per_second > 0:
            # Those ahead take their tokens first: wait for theirs and ours to decay.
            wait = seconds_until_room(
                state.active_slots, state.limit, slots_ahead + occupy, state.decay_per_second
            )
            if wait is not None:
                retry_after = wait if retry_after is None else max(retry_after, wait)
    return Decision(
        grant=not blocked,
        limited=tuple(limited),
        unknown=tuple(unknown),
        inactive=tuple(inactive),
        reasons=tuple(reasons),
        blocked=tuple(blocked),
        retry_after=retry_after,
    )


def _fmt(slots: float) -> str:
    return str(int(slots)) if abs(slots - round(slots)) < EPSILON else f"{slots:.2f}"


@dataclass(frozen=True)
class QueuedRequest:
    """A waiting request as the wake-up planner sees it."""

    waiter_id: str
    priority: int
    seq: int
    slots: int
    names: frozenset[str]


def plan_wakeups(free: Mapping[str, float], queue: Iterable[QueuedRequest]) -> list[str]:
    """The waiters that can be granted now, in grant order: the FIFO prefix that fits.

    ``free`` holds the free slots of every active limit the queue touches (a
    name missing from it is unknown or inactive and costs nothing). Walking the
    queue in order, a request is planned when it fits on all its limits and no
    request before it is stuck on any of them; a stuck request closes its
    limits to everyone behind it, exactly as the grant rule does.
    """
    remaining = dict(free)
    closed: set[str] = set()
    planned: list[str] = []
    for req in sorted(queue, key=lambda r: queue_key(r.priority, r.seq)):
        limited = [n for n in req.names if n in remaining]
        fits = all(n not in closed and remaining[n] + EPSILON >= req.slots for n in limited)
        if fits:
            for n in limited:
                remaining[n] -= req.slots
            planned.append(req.waiter_id)
        else:
            closed.update(limited)
        if limited and all(n in closed for n in remaining):
            break
    return planned


def queue_depth(state: LimitState | None) -> int | None:
    """How far down a limit's queue :func:`plan_wakeups` can ever look; None: all of it.

    Every request takes at least one slot, and the walk closes a limit at the
    first request on it that does not fit: of a limit with ``free`` slots no
    more than ``floor(free) + 1`` requests are granted or stop the walk, so the
    rest of its queue cannot change the plan. An unknown or inactive limit
    limits nobody, and its whole queue may go at once.
    """
    if state is None or not state.active:
        return None
    return math.floor(state.free + EPSILON) + 1


# -- leases and polling -----------------------------------------------------------------
def lease_expiry(now: float, lease_seconds: float) -> float:
    """When a lease taken or renewed at ``now`` expires."""
    return now + lease_seconds


def renew_interval(lease_seconds: float) -> float:
    """How often a holder renews: a third of the lease, so two renewals may fail safely."""
    return max(0.01, lease_seconds / 3.0)


def is_expired(expires: float, now: float) -> bool:
    """Whether a lease or waiter row has expired at ``now``."""
    return expires <= now


def next_poll_interval(previous: float | None) -> float:
    """The next fallback re-check interval: 20 ms growing to 250 ms."""
    if previous is None:
        return POLL_FIRST_SECONDS
    return min(POLL_MAX_SECONDS, previous * POLL_GROWTH)


@dataclass(frozen=True)
class ProcessRecord:
    """The process recorded on a lease or waiter row (to reap it when it is gone)."""

    pid: int
    node: str | None
    proc_start: int


def is_dead(
    record: ProcessRecord, my_node: str | None, start_time_of: Mapping[int, int | None]
) -> bool:
    """Whether a recorded process is certainly gone.

    Only a process of this node (same boot, same pid namespace) can be judged,
    by its start time: a pid that no longer exists (``None``) or now belongs to
    a process started at another time is dead. Anything uncertain is alive, and
    waits for plain expiry: reaping a live holder would over-admit.
    """
    if not my_node or record.node != my_node or record.proc_start <= 0:
        return False
    if record.pid not in start_time_of:
        return False
    current = start_time_of[record.pid]
    return current is None or current != record.proc_start


# -- records ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessInfo:
    """The process asking for slots: recorded on its lease and waiter rows."""

    pid: int
    host: str
    #: Boot id and pid namespace: processes are judged dead by pid only on the same node.
    node: str | None = None
    #: Start time of the process (clock ticks since boot), to survive pid reuse.
    proc_start: int = 0


def validate_process(process: object) -> ProcessInfo:
    """A process record that fits its columns (pid 32-bit, start time 64-bit)."""
    if not isinstance(process, ProcessInfo):
        raise ValidationError(f"process must be a ProcessInfo, got {type(process).__name__}")
    check_pid(process.pid, "process pid")
    check_proc_start(process.proc_start)
    if not isinstance(process.host, str) or len(process.host) > HOST_MAX:
        raise ValidationError(f"process host must be a string of at most {HOST_MAX} characters")
    if process.node is not None and (not isinstance(process.node, str) or len(process.node) > 100):
        raise ValidationError("process node must be a string of at most 100 characters")
    return process


@dataclass(frozen=True)
class SlotGrant:
    """Slots granted: held by ``lease_id`` until released (None when nothing is held)."""

    lease_id: str | None
    names: tuple[str, ...]
    slots: int
    mode: Mode = "concurrency"
    unknown: tuple[str, ...] = ()
    inactive: tuple[str, ...] = ()
    #: Epoch seconds at which the lease expires unless renewed.
    expires: float | None = None
    lease_seconds: float | None = None
    waited_seconds: float = 0.0

    @property
    def granted(self) -> bool:
        """Always True: the request was granted."""
        return True


@dataclass(frozen=True)
class SlotWait:
    """Not granted (yet): the request waits as ``waiter_id``, for these reasons."""

    waiter_id: str
    reasons: tuple[str, ...]
    #: Seconds until a rate limit will have decayed enough; None: until a release.
    retry_after: float | None = None

    @property
    def granted(self) -> bool:
        """Always False: the request is still waiting."""
        return False

    @property
    def reason(self) -> str:
        """The reasons as one line."""
        return "; ".join(self.reasons) or "waiting"


@dataclass(frozen=True)
class LimitDetail:
    """A limit with who holds it and who waits for it, in grant order."""

    limit: Limit
    holders: tuple[Lease, ...] = field(default_factory=tuple)
    waiters: tuple[Waiter, ...] = field(default_factory=tuple)
    #: How much of the limit was held while anyone waited, over the last
    #: :data:`UTILIZATION_WINDOW_SECONDS` (None for a rate limit).
    utilization: Utilization | None = None


#: The window ``inspect`` and ``/metrics`` measure utilization while waiting over.
UTILIZATION_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class WakeTarget:
    """A waiter to notify after a commit: its id, and where its process listens."""

    waiter_id: str
    address: str | None
    host: str
    pid: int


__all__ = [
    "DECAY_MIN",
    "EPSILON",
    "HOLDER_KINDS",
    "HOST_MAX",
    "LIMIT_MAX",
    "MODES",
    "NAME_MAX",
    "NOT_QUEUED",
    "Decision",
    "LimitDetail",
    "LimitState",
    "Mode",
    "ProcessInfo",
    "ProcessRecord",
    "QueuedRequest",
    "SlotGrant",
    "SlotWait",
    "WakeTarget",
    "check_occupy_fits",
    "closed_reason",
    "decayed",
    "decide",
    "has_room",
    "is_ahead",
    "is_dead",
    "is_expired",
    "lease_expiry",
    "next_poll_interval",
    "plan_wakeups",
    "queue_key",
    "released",
    "renew_interval",
    "seconds_until_room",
    "tag_limit_name",
    "validate_active_slots",
    "validate_decay",
    "validate_lease_seconds",
    "validate_limit",
    "validate_name",
    "validate_names",
    "validate_occupy",
    "validate_priority",
    "validate_process",
    "validate_timeout",
]
