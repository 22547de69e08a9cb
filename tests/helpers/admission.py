"""A model of the slot engine built from :mod:`headway.core.limits` alone.

The admission property test (tests/contract/test_admission_property.py) runs
each operation on a real store and on this model, and compares what they say.
The model keeps the engine's state as plain Python (limits, leases, waiter
rows, grants handed to waiters not yet taken) and decides every grant with the
core's functions: :func:`decide` for a request, :func:`plan_wakeups` for the
order a handoff walks the queue, :func:`decayed`-style arithmetic for decay,
:func:`is_expired` for leases and waiter rows. It reads every queue whole
(no :func:`queue_depth` cut), so a store that reads only the heads must still
agree with it.

It follows the engine's documented moments, not a wished-for ideal:

- a handoff runs on the limits an operation touched (a release, a cancel, a
  limit changed or reset, a reap, a queued request granted on its own attempt)
  and grants the FIFO prefix that fits, each with a full :func:`decide`;
- room that appears by itself (decay, an expiry nobody has reaped yet) is
  taken only by the next attempt, or by the sweep that reaps;
- an attempt that would wait first reaps the expired rows of its own limits;
- an expired lease is reaped per limit: its rows elsewhere are doomed and go
  when those limits are next touched.

Two switches turn on what the rule asks and the store does not do yet (both
shown by xfail tests in tests/contract/test_admission_cases.py): ``cascade``,
a waiter granted by a handoff hands on the queues it leaves, as a waiter
granted on its own attempt does; ``whole_request``, a handoff decides on every
name the waiter asked for, not only on the limits it has rows on (a limit
disabled when it queued has none).

Time is in units of :data:`UNIT` seconds of store time, and every expiry falls
on a half unit while the clock moves in whole units: the few seconds of wall
time a test takes never decide whether something expired, and a rate limit's
decay (whole slots per unit) never leaves the model a fraction to round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from headway.core.limits import (
    NOT_QUEUED,
    Decision,
    LimitState,
    Mode,
    QueuedRequest,
    decide,
    is_ahead,
    is_expired,
    lease_expiry,
    plan_wakeups,
    queue_key,
    released,
)
from headway.exceptions import LimitClosed, ValidationError

#: Seconds of store time in one model unit of time.
UNIT = 1000.0


@dataclass
class ModelLimit:
    """A limit: ``used`` is its occupancy now (already decayed)."""

    name: str
    limit: int
    active: bool
    decay: float  # slots per unit
    used: float = 0.0

    def state(self) -> LimitState:
        """As a decision sees it (decay per unit: the model's time unit)."""
        return LimitState(self.name, self.limit, self.active, self.used, self.decay)


@dataclass
class ModelLease:
    """A lease: its rows (one per limit) share its slots and its expiry."""

    key: str
    label: str
    slots: int
    rows: set[str]
    expires: float
    #: Reaped on one limit: its other rows can no longer be renewed.
    doomed: bool = False


@dataclass
class ModelWaiter:
    """A named request: what it asks for, and its rows in the queues (if any)."""

    waiter_id: str
    label: str
    names: tuple[str, ...]
    occupy: int
    priority: int
    mode: Mode
    lease_units: float
    seq: int = NOT_QUEUED
    rows: set[str] = field(default_factory=set)
    expires: float = 0.0


@dataclass
class ModelHandoff:
    """A grant made to a waiter by someone else, waiting for it to come and take it."""

    lease: str | None
    names: tuple[str, ...]
    slots: int
    forget: float


@dataclass(frozen=True)
class Outcome:
    """What one acquire attempt answered."""

    #: ``error``: refused as invalid (ValidationError); ``closed``: a limit is 0 (LimitClosed).
    kind: Literal["grant", "wait", "gone", "error", "closed"]
    names: tuple[str, ...] = ()
    slots: int = 0
    #: The model's key of the lease granted (None: nothing held, or rate tokens).
    lease: str | None = None
    reasons: tuple[str, ...] = ()
    #: In model units.
    retry_after: float | None = None


@dataclass(frozen=True)
class LimitView:
    """One limit as ``inspect_limit`` shows it, reduced to what must agree."""

    limit: int
    active: bool
    used: float
    #: (holder label, slots), sorted: leases created in one instant have no order.
    holders: tuple[tuple[str, int], ...]
    #: (holder label, slots, priority), in grant order.
    waiters: tuple[tuple[str, int, int], ...]


class SlotModel:
    """The engine's state and operations, decided by the core's rule."""

    def __init__(
        self, ttl_units: float, *, cascade: bool = False, whole_request: bool = False
    ) -> None:
        self.ttl = ttl_units
        self.whole_request = whole_request
        self.cascade = cascade
        self.now = 0.0
        self.limits: dict[str, ModelLimit] = {}
        self.leases: dict[str, ModelLease] = {}
        self.waiters: dict[str, ModelWaiter] = {}
        self.handoffs: dict[str, ModelHandoff] = {}
        self._seq = 0
        self._leases_made = 0

    # -- limits and time ------------------------------------------------------------
    def create_limit(self, name: str, limit: int, decay: float = 0.0) -> None:
        """A new, active, empty limit."""
        self.limits[name] = ModelLimit(name, limit, True, decay)

    def advance(self, units: float) -> None:
        """Move time on: rate limits drain; expiries come due (nothing is reaped)."""
        self.now += units
        for lim in self.limits.values():
            lim.used = max(0.0, lim.used - lim.decay * units)

    def update(self, name: str, *, limit: int | None = None, active: bool | None = None) -> None:
        """``update_limit``: holders keep their slots; the room is handed on."""
        lim = self.limits[name]
        if limit is not None:
            lim.limit = limit
        if active is not None:
            lim.active = active
        self._handoff([name])

    def reset(self, name: str) -> None:
        """``reset_limit``: its leases are dropped (doomed elsewhere), its count is 0."""
        for lease in self.leases.values():
            if name in lease.rows:
                lease.rows.discard(name)
                lease.doomed = True
        self.limits[name].used = 0.0
        self._handoff([name])

    # -- requests -------------------------------------------------------------------
    def acquire(
        self,
        waiter_id: str | None,
        label: str,
        names: tuple[str, ...],
        occupy: int,
        *,
        priority: int = 0,
        mode: Mode = "concurrency",
        lease_units: float = 1.5,
    ) -> Outcome:
        """One attempt (``timeout=0``): under a named waiter it queues, or keeps its place."""
        names = tuple(sorted(set(names)))
        waiter = self.waiters.get(waiter_id) if waiter_id else None
        if waiter_id and waiter_id in self.handoffs:
            return self._take(waiter_id)
        queued = waiter is not None and bool(waiter.rows)
        seq = waiter.seq if waiter is not None and queued else NOT_QUEUED
        try:
            decision = self._decide(names, occupy, mode, priority, seq)
        except ValidationError:
            return Outcome("error")
        except LimitClosed:
            return Outcome("closed")
        freed: list[str] = []
        if not decision.grant:
            # Before waiting, clear the way: expired holders and waiters.
            freed, _ = self._reap(decision.limited, keep=waiter_id)
            if freed:
                decision = self._decide(names, occupy, mode, priority, seq)
        if decision.grant:
            if queued:
                assert waiter_id is not None
                self._dequeue(waiter_id, set(names))
            key = self._grant(decision, label, occupy, mode, lease_units)
            recheck = sorted({*freed, *decision.limited}) if queued else freed
            self._handoff(recheck)
            if waiter_id and waiter is not None:
                del self.waiters[waiter_id]
            return Outcome("grant", decision.limited, occupy, key)
        self._handoff(freed)
        wait = Outcome("wait", reasons=decision.reasons, retry_after=decision.retry_after)
        if waiter_id is None:
            return wait
        if not queued:
            self._seq += 1
            self.waiters[waiter_id] = ModelWaiter(
                waiter_id,
                label,
                names,
                occupy,
                priority,
                mode,
                lease_units,
                seq=self._seq,
                rows=set(decision.limited),
                expires=self.now + self.ttl,
            )
        else:
            assert waiter is not None
            # Its place kept, refreshed; a limit enabled since it queued gets its row too.
            waiter.expires = self.now + self.ttl
            waiter.rows |= set(decision.limited)
        return wait

    def cancel(self, waiter_id: str) -> None:
        """``cancel_slot_wait``: out of every queue; a grant never taken is given back."""
        waiter = self.waiters.pop(waiter_id, None)
        left = set(waiter.rows) if waiter is not None else set()
        back: set[str] = set()
        handed = self.handoffs.pop(waiter_id, None)
        if handed is not None:
            if handed.lease is not None:
                back = self._release_rows(self.leases[handed.lease])
            else:
                # Rate tokens never used: given back.
                for name in handed.names:
                    lim = self.limits[name]
                    lim.used = released(lim.used, handed.slots)
                back = set(handed.names)
        self._handoff(sorted(left | back))

    def release(self, key: str) -> bool:
        """``release_slots``: True when the lease was still whole."""
        lease = self.leases[key]
        if not lease.rows:
            return False
        intact = not lease.doomed
        names = self._release_rows(lease)
        crowded = sorted(n for n in names if any(n in w.rows for w in self.waiters.values()))
        self._handoff(crowded)
        return intact

    def renew(self, key: str, units: float) -> bool:
        """``renew_leases``: True when the lease was lost (reaped, or reaped in part)."""
        lease = self.leases[key]
        if not lease.rows or lease.doomed:
            return True
        lease.expires = lease_expiry(self.now, units)
        return False

    def sweep(self, names: list[str] | None = None) -> int:
        """``sweep_slots`` (all limits with rows, or ``names``): leases reaped."""
        if names is None:
            names = sorted(
                {n for lease in self.leases.values() for n in lease.rows}
                | {n for w in self.waiters.values() for n in w.rows}
            )
        count = 0
        if names:
            freed, count = self._reap(names, keep=None)
            self._handoff(freed)
        # Grants never taken are forgotten with their lease (their lease is reaped too).
        for waiter_id in [w for w, h in self.handoffs.items() if is_expired(h.forget, self.now)]:
            del self.handoffs[waiter_id]
        return count

    # -- what a test compares -------------------------------------------------------
    def inspect(self, name: str) -> LimitView:
        """``inspect_limit``: the limit is swept first, then read."""
        self.sweep([name])
        return self.view(name)

    def view(self, name: str) -> LimitView:
        """The limit as it is now (no sweep)."""
        lim = self.limits[name]
        holders = sorted(
            (lease.label, lease.slots) for lease in self.leases.values() if name in lease.rows
        )
        waiting = sorted(
            (w for w in self.waiters.values() if name in w.rows and self._live(w)),
            key=lambda w: queue_key(w.priority, w.seq),
        )
        return LimitView(
            lim.limit,
            lim.active,
            lim.used,
            tuple(holders),
            tuple((w.label, w.occupy, w.priority) for w in waiting),
        )

    def live_waiters(self, name: str) -> int:
        """Live waiter rows on a limit (what ``read_limit`` counts)."""
        return sum(1 for w in self.waiters.values() if name in w.rows and self._live(w))

    # -- the rule -------------------------------------------------------------------
    def _live(self, waiter: ModelWaiter) -> bool:
        return not is_expired(waiter.expires, self.now)

    def _decide(
        self, names: tuple[str, ...], occupy: int, mode: Mode, priority: int, seq: int
    ) -> Decision:
        states = {n: self.limits[n].state() for n in names if n in self.limits}
        ahead: dict[str, tuple[int, int]] = {}
        for name in states:
            before = [
                w
                for w in self.waiters.values()
                if name in w.rows and self._live(w) and is_ahead(w.priority, w.seq, priority, seq)
            ]
            if before:
                ahead[name] = (len(before), sum(w.occupy for w in before))
        return decide(names, occupy, mode, states, ahead)

    def _grant(
        self, decision: Decision, label: str, occupy: int, mode: Mode, lease_units: float
    ) -> str | None:
        for name in decision.limited:
            self.limits[name].used += occupy
        if not decision.limited or mode == "rate":
            return None
        self._leases_made += 1
        key = f"{label}#{self._leases_made}"
        self.leases[key] = ModelLease(
            key, label, occupy, set(decision.limited), lease_expiry(self.now, lease_units)
        )
        return key

    def _take(self, waiter_id: str) -> Outcome:
        handed = self.handoffs.pop(waiter_id)
        self.waiters.pop(waiter_id, None)
        if handed.lease is not None:
            lease = self.leases[handed.lease]
            if not lease.rows or lease.doomed:
                return Outcome("gone")
        return Outcome("grant", handed.names, handed.slots, handed.lease)

    def _dequeue(self, waiter_id: str, within: set[str]) -> set[str]:
        waiter = self.waiters[waiter_id]
        gone = waiter.rows & within
        waiter.rows -= within
        return gone

    def _release_rows(self, lease: ModelLease) -> set[str]:
        names = set(lease.rows)
        for name in names:
            lim = self.limits[name]
            lim.used = released(lim.used, lease.slots)
        lease.rows.clear()
        return names

    def _reap(self, names: tuple[str, ...] | list[str], keep: str | None) -> tuple[list[str], int]:
        """Expired waiter rows and lease rows on ``names``: the names changed, leases reaped."""
        within = set(names)
        changed: set[str] = set()
        for waiter in self.waiters.values():
            if waiter.waiter_id != keep and waiter.rows & within and not self._live(waiter):
                changed |= self._dequeue(waiter.waiter_id, within)
        count = 0
        for lease in self.leases.values():
            here = lease.rows & within
            if here and (lease.doomed or is_expired(lease.expires, self.now)):
                for name in here:
                    lim = self.limits[name]
                    lim.used = released(lim.used, lease.slots)
                lease.rows -= here
                lease.doomed = True
                changed |= here
                count += 1
        return sorted(changed), count

    def _handoff(self, names: list[str]) -> None:
        """Grant the room on ``names`` to the FIFO prefix of their queues that fits."""
        while names:
            names = self._handoff_once(names)

    def _handoff_once(self, names: list[str]) -> list[str]:
        """One walk of the queues of ``names``; the other queues its grants left."""
        candidates = [w for w in self.waiters.values() if w.rows & set(names) and self._live(w)]
        involved = set(names) | {n for w in candidates for n in w.rows}
        free = {
            n: self.limits[n].state().free
            for n in involved
            if n in self.limits and self.limits[n].active
        }
        queue = [
            QueuedRequest(w.waiter_id, w.priority, w.seq, w.occupy, frozenset(w.rows))
            for w in candidates
        ]
        left: set[str] = set()
        for waiter_id in plan_wakeups(free, queue):
            waiter = self.waiters[waiter_id]
            # The store decides on the limits the waiter has rows on.
            wanted = waiter.names if self.whole_request else tuple(sorted(waiter.rows))
            try:
                decision = self._decide(
                    wanted, waiter.occupy, waiter.mode, waiter.priority, waiter.seq
                )
            except (ValidationError, LimitClosed):
                continue  # woken: its own attempt tells its caller why
            if not decision.grant:
                continue
            left |= self._dequeue(waiter_id, set(wanted))
            key = self._grant(
                decision, waiter.label, waiter.occupy, waiter.mode, waiter.lease_units
            )
            forget = self.leases[key].expires if key is not None else self.now + self.ttl
            self.handoffs[waiter_id] = ModelHandoff(key, decision.limited, waiter.occupy, forget)
        return sorted(left - set(names)) if self.cascade else []
