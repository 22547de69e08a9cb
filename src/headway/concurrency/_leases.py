"""Held slots and the one background thread per process that keeps their leases alive.

Every grant is a lease that expires unless renewed. While a process holds
slots, a daemon thread renews all of its leases every third of the shortest
lease duration, in one call per client and duration. When a renewal finds a
lease gone (the process was paused past its expiry and the lease was reaped),
the :class:`HeldSlots` is marked lost; the holder learns it from ``.lost``,
``.check()``, or a :class:`~headway.exceptions.LeaseLostError` when the block ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict

from headway.client.base import Client
from headway.concurrency._scopes import note_held
from headway.core.limits import SlotGrant, renew_interval
from headway.exceptions import LeaseLostError

logger = logging.getLogger("headway.concurrency")


class HeldSlots:
    """Slots granted to a ``concurrency()`` block (what ``with ... as held`` gives).

    ``names`` are the limits that took slots; ``unknown`` and ``inactive`` names
    took none. ``lost`` turns True if the lease was reaped while held.
    """

    __slots__ = ("_lost", "_released", "client", "grant")

    def __init__(self, client: Client | None, grant: SlotGrant) -> None:
        #: The client holding the lease (None when nothing is held: no names).
        self.client = client
        self.grant = grant
        self._lost = False
        self._released = False

    @property
    def lease_id(self) -> str | None:
        """The lease holding the slots (None when no named limit applied)."""
        return self.grant.lease_id

    @property
    def names(self) -> tuple[str, ...]:
        """The limits whose slots are held."""
        return self.grant.names

    @property
    def occupy(self) -> int:
        """Slots held on each limit."""
        return self.grant.slots

    @property
    def unknown(self) -> tuple[str, ...]:
        """Named limits that do not exist (not limited)."""
        return self.grant.unknown

    @property
    def inactive(self) -> tuple[str, ...]:
        """Named limits that are disabled (not limited)."""
        return self.grant.inactive

    @property
    def released(self) -> bool:
        """True once the slots were given back (or there were none to give back)."""
        return self._released

    @property
    def lost(self) -> bool:
        """True once the lease is known to have been reaped while held."""
        return self._lost

    def check(self) -> None:
        """Raise LeaseLostError if the lease was lost (call it in long blocks)."""
        if self._lost:
            raise LeaseLostError(self._lost_message())

    def _lost_message(self) -> str:
        return (
            f"the lease on {', '.join(repr(n) for n in self.names)} expired and its slots"
            " were given to others while this block ran (was the process paused, or the"
            " limit reset?)"
        )

    def release(self) -> None:
        """Give the slots back now (idempotent); LeaseLostError if the lease was lost."""
        if self._released:
            return
        if self.grant.lease_id is None:
            self._released = True
            return
        _renewer().remove(self)
        # Marked released only once the store said so: a release cut short (a
        # store error, a timeout's interrupt landing here) can be made again.
        assert self.client is not None  # a lease is always taken through a client
        intact = self.client.release_slots(self.grant.lease_id)
        self._released = True
        if not intact:
            self._lost = True
        self.check()

    def __repr__(self) -> str:
        state = "lost" if self._lost else "released" if self._released else "held"
        return f"HeldSlots(names={self.names!r}, occupy={self.occupy}, {state})"


class _Renewer:
    """Renews every live lease of this process from one daemon thread."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._held: dict[str, HeldSlots] = {}
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        # The renewal interval the thread currently sleeps on (None: idle).
        self._planned: float | None = None

    def add(self, held: HeldSlots) -> None:
        lease_id = held.grant.lease_id
        if lease_id is None:
            return
        interval = renew_interval(held.grant.lease_seconds or 30.0)
        with self._lock:
            self._held[lease_id] = held
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="headway-lease-renewer", daemon=True
                )
                self._thread.start()
            # Wake the thread only when it must plan sooner: not on every grant.
            replan = self._planned is None or interval < self._planned
            if replan:
                self._planned = interval
        if replan:
            self._changed.set()

    def remove(self, held: HeldSlots) -> None:
        lease_id = held.grant.lease_id
        if lease_id is not None:
            with self._lock:
                self._held.pop(lease_id, None)

    def _interval(self) -> float | None:
        with self._lock:
            durations = [h.grant.lease_seconds or 30.0 for h in self._held.values()]
        return min(renew_interval(d) for d in durations) if durations else None

    def _run(self) -> None:
        next_round: float | None = None
        while True:
            interval = self._interval()
            if interval is None:
                # Idle: keep the last plan, so the next grant need not wake us
                # (it is renewed within one interval of being taken, as planned).
                if self._changed.wait(self._planned):
                    self._changed.clear()
                next_round = None
                continue
            with self._lock:
                self._planned = interval
            now = time.monotonic()
            # A lease with a shorter duration than those held brings the round forward.
            next_round = now + interval if next_round is None else min(next_round, now + interval)
            if next_round > now:
                if self._changed.wait(next_round - now):
                    self._changed.clear()
                continue
            self.renew_now()
            next_round = time.monotonic() + interval

    def renew_now(self) -> None:
        """Renew every held lease once (one call per client and lease duration)."""
        with self._lock:
            held = list(self._held.values())
        groups: dict[tuple[int, float], list[HeldSlots]] = defaultdict(list)
        for h in held:
            groups[(id(h.client), h.grant.lease_seconds or 30.0)].append(h)
        for (_, seconds), items in groups.items():
            ids = [h.grant.lease_id for h in items if h.grant.lease_id is not None]
            try:
                client = items[0].client
                if client is None:  # never: only leases are renewed, and they have one
                    continue
                lost = set(client.renew_leases(ids, seconds))
            except Exception as exc:  # the store is briefly unreachable: try next round
                logger.warning("could not renew %d lease(s): %s", len(ids), exc)
                continue
            with self._lock:
                # A lease given back while its renewal was on the way is not found
                # either: only those still held here (a release removes its lease
                # before it reaches the store) were lost.
                gone = [
                    h
                    for h in items
                    if h.grant.lease_id in lost and self._held.get(h.grant.lease_id) is h
                ]
            for h in gone:
                h._lost = True
                self.remove(h)
                logger.warning("lease lost on %s", ", ".join(h.names), extra={"limit": h.names})


_instance: _Renewer | None = None
_instance_lock = threading.Lock()


def _renewer() -> _Renewer:
    # One per process; a forked child starts its own (the parent's thread is not inherited).
    global _instance
    current = _instance
    if current is not None and current._pid == os.getpid():
        return current
    with _instance_lock:
        if _instance is None or _instance._pid != os.getpid():
            _instance = _Renewer()
        return _instance


def hold(client: Client | None, grant: SlotGrant) -> HeldSlots:
    """Wrap a grant and keep its lease renewed until released."""
    held = HeldSlots(client, grant)
    if grant.lease_id is not None:
        _renewer().add(held)
        note_held(held)
    return held
