"""Slots: acquire, release, renew, and a waiting request's look for its grant.

Every operation that changes a limit's occupancy or queue first locks the
limit rows it touches (SQLite: ``BEGIN IMMEDIATE`` locks the database;
PostgreSQL: ``SELECT ... FOR UPDATE`` in name order, so multi-limit requests
never deadlock), then reads, decides with :mod:`headway.core.limits`, and
writes. Slots freed or room made are handed straight to the head of the
queue in the same transaction (``store/slots/handoff.py``); only the waiters
granted are returned as :class:`WakeTarget`, to be notified after the commit
(``store/wakeups.py``). SQLite's uncontended grant is one statement
(``store/slots/fast.py``). On PostgreSQL an acquire, a release and a
waiter's look are each one statement, a call of a function that does the
same work in the database (``store/slots/pg.py``, ``pg_acquire.py``), so
that the limits' row locks are held for the database's work alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from headway.core.attempts import Attempt
from headway.core.clock import Clock
from headway.core.limits import NOT_QUEUED, Mode, ProcessInfo, SlotWait, WakeTarget, decide
from headway.exceptions import ConcurrencySlotAcquisitionError
from headway.settings import Settings
from headway.store.db import Database, Tx
from headway.store.events import Events
from headway.store.queries import slots as qs
from headway.store.slots.fast import fast_grant
from headway.store.slots.handoff import Handoff
from headway.store.slots.pg import release_in_one, take_in_one
from headway.store.slots.pg_acquire import acquire_in_one
from headway.store.slots.reaper import Reaper
from headway.store.slots.rows import (
    DOOMED,
    bind,
    lock,
    marks,
    read_for_acquire,
    release_in,
    write_grant,
)
from headway.store.slots.run_waits import RunWaits


def next_seq(tx: Tx, name: str) -> int:
    """The next value of the sequence ``name`` (waiters' FIFO order), inside ``tx``."""
    row = tx.one(qs.NEXT_SEQUENCE_VALUE, {"name": name})
    if row is None:
        tx.execute(qs.INSERT_SEQUENCE, {"name": name})
        row = tx.one(qs.NEXT_SEQUENCE_VALUE, {"name": name})
    assert row is not None
    return int(row[0])


class Slots:
    """Taking and giving back slots. Each public method is one transaction (or one statement)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock,
        events: Events,
        handoff: Handoff,
        reaper: Reaper,
        run_waits: RunWaits,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.events = events
        self.handoff = handoff
        self.reaper = reaper
        self.run_waits = run_waits

    def acquire_slots(
        self,
        names: Sequence[str],
        occupy: int,
        *,
        mode: Mode,
        priority: int,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        lease_seconds: float,
        waiter_id: str,
        new_waiter: bool,
        may_queue: bool,
        wake_address: str | None,
        strict: bool = False,
    ) -> Attempt:
        """One attempt to take ``occupy`` slots of every name in ``names`` (sorted, unique).

        Granted when every known active limit has room and nobody waits ahead on
        any of them; otherwise the request waits as ``waiter_id`` (queued now
        when ``may_queue``, its expiry refreshed when already queued). Unknown
        and inactive names take nothing and are reported on the grant.
        ``new_waiter`` says the caller knows no row of ``waiter_id`` exists yet.
        With ``strict``, an unknown name raises ConcurrencySlotAcquisitionError.
        """
        now = self.clock.now()
        if self.db.dialect.slot_functions:
            # One statement, whatever comes of it (store/slots/pg.py); None when
            # it leaves the request to the path below, having written nothing.
            done = acquire_in_one(self.db, self.events, self.settings, self.reaper,
                names, occupy, mode=mode, priority=priority, holder_kind=holder_kind,
                holder_id=holder_id, process=process, lease_seconds=lease_seconds,
                waiter_id=waiter_id, new_waiter=new_waiter, may_queue=may_queue,
                wake_address=wake_address, strict=strict, now=now,
            )  # fmt: skip
            if done is not None:
                return done
        with self.db.write() as tx:
            if holder_kind == "task_run" and holder_id:
                # Before any limit's lock: a cancel takes the run's row, then the limits'.
                ended = self.run_waits.task_run_ended(tx, holder_id)
                if ended is not None:
                    self.events.event(tx, now, "slot.refused", None, None, ended, run_id=holder_id)
                    return Attempt(
                        refused=ended, wake=tuple(self.handoff.leave(tx, waiter_id, now))
                    )
            seq, waiting_since = NOT_QUEUED, now
            queued_on: set[str] = set()
            if tx.dialect.row_locks:
                # Row locks first, in name order; the statements after this one then
                # see every request queued, and every grant handed to this one, by
                # whoever held these locks before us.
                lock(tx, names)
            if not new_waiter:
                # Handed the slots by whoever freed them: take the grant, nothing more.
                handed = self.handoff.take(tx, waiter_id, names, now)
                if handed is not None:
                    return handed
                mine = tx.execute(qs.SELECT_WAITER_PLACE, {"w": waiter_id})
                if mine:
                    seq, waiting_since = int(mine[0][0]), float(mine[0][1])
                    queued_on = {r[2] for r in mine}
                elif not may_queue:
                    return Attempt(gone=True)
            if (
                not tx.dialect.row_locks
                and seq == NOT_QUEUED
                and mode == "concurrency"
                and len(names) == 1
                and holder_kind == "code"
            ):
                fast = fast_grant(self.events,
                    tx, names[0], occupy, priority, holder_kind, holder_id, process,
                    lease_seconds, now,
                )  # fmt: skip
                if fast is not None:
                    return Attempt(grant=fast)
            states, ahead = read_for_acquire(tx, names, priority, seq, now)
            decision = decide(names, occupy, mode, states, ahead)
            if strict and decision.unknown:
                raise ConcurrencySlotAcquisitionError(
                    "no limit named "
                    + ", ".join(repr(n) for n in decision.unknown)
                    + " (strict=True)"
                )
            freed: list[str] = []
            if not decision.grant:
                # Before waiting, clear the way: expired or dead holders and waiters.
                freed, _ = self.reaper.reap(
                    tx, decision.limited, now, check_processes=True, keep_waiter=waiter_id
                )
                if freed:
                    states, ahead = read_for_acquire(tx, names, priority, seq, now)
                    decision = decide(names, occupy, mode, states, ahead)
            if decision.grant:
                grant = write_grant(
                    self.events,
                    tx,
                    decision,
                    states,
                    occupy,
                    mode,
                    holder_kind,
                    holder_id,
                    process,
                    lease_seconds,
                    now,
                    waiter_id if seq != NOT_QUEUED else None,
                    now - waiting_since,
                )
                # A queued request leaving the queue unblocks those behind it, and
                # slots freed by reaping may be more than this request took: wake
                # whoever can go next (the releaser only woke the prefix it saw).
                recheck = sorted({*freed, *decision.limited}) if seq != NOT_QUEUED else freed
                return Attempt(grant=grant, wake=tuple(self.handoff.hand_off(tx, recheck, now)))
            wake = self.handoff.hand_off(tx, freed, now)
            if seq == NOT_QUEUED:
                if not may_queue:
                    return Attempt(
                        wait=SlotWait(waiter_id, decision.reasons, decision.retry_after),
                        wake=tuple(wake),
                    )
                self._enqueue(
                    tx,
                    waiter_id,
                    names,
                    decision.limited,
                    occupy,
                    priority,
                    holder_kind,
                    holder_id,
                    process,
                    wake_address,
                    now,
                    mode,
                    lease_seconds,
                )
            else:
                # The wake address follows the request: a long poll resumed through
                # another server (or process) is woken there.
                tx.execute(
                    qs.REFRESH_WAITER,
                    {
                        "e": now + self.settings.waiter_ttl_seconds,
                        "w": waiter_id,
                        "addr": wake_address,
                    },
                )
                missing = [n for n in decision.limited if n not in queued_on]
                if missing:
                    # A limit created (or enabled) since the request queued: it keeps
                    # its place there too, so nobody who came later passes it.
                    self._enqueue(
                        tx,
                        waiter_id,
                        names,
                        missing,
                        occupy,
                        priority,
                        holder_kind,
                        holder_id,
                        process,
                        wake_address,
                        waiting_since,
                        mode,
                        lease_seconds,
                        seq=seq,
                    )
        return Attempt(
            wait=SlotWait(waiter_id, decision.reasons, decision.retry_after), wake=tuple(wake)
        )

    def _enqueue(
        self,
        tx: Tx,
        waiter_id: str,
        names: Sequence[str],
        limited: Sequence[str],
        occupy: int,
        priority: int,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        wake_address: str | None,
        now: float,
        mode: Mode,
        lease_seconds: float,
        seq: int | None = None,
    ) -> None:
        # The row carries all a lease needs, so a release can grant it directly;
        # and, when the request named limits it has no row on (not limited now),
        # all its names, so that a handoff decides on them all.
        if seq is None:
            seq = next_seq(tx, "waiters")
        asked = json.dumps(list(names)) if set(names).difference(limited) else None
        expires = self.clock.now() + self.settings.waiter_ttl_seconds
        tx.executemany(
            qs.INSERT_WAITER,
            [
                {
                    "seq": seq,
                    "name": n,
                    "w": waiter_id,
                    "slots": occupy,
                    "p": priority,
                    "kind": holder_kind,
                    "holder": holder_id,
                    "pid": process.pid,
                    "host": process.host,
                    "start": process.proc_start,
                    "addr": wake_address,
                    "now": now,
                    "expires": expires,
                    "node": process.node,
                    "mode": mode,
                    "seconds": lease_seconds,
                    "asked": asked,
                }
                for n in limited
            ],
        )
        tx.executemany(qs.COUNT_DENIAL, [{"name": n} for n in limited])
        self.events.slot_events(tx, now, "slot.denied", limited, occupy, holder_kind, holder_id,
                          process, None, None, f" priority={priority}")  # fmt: skip

    def claim_handoff(self, waiter_id: str, names: Sequence[str]) -> Attempt | None:
        """A waiting request's cheap look: has someone handed it the slots?

        The grant (``Attempt.grant``), ``Attempt.gone`` when its lease was
        reaped meanwhile, or None when nothing was handed to it. A read first,
        so that a waiter that finds nothing writes nothing (and takes no
        SQLite write lock). On PostgreSQL one statement: a ``DELETE`` that
        finds nothing writes nothing either.
        """
        if not waiter_id:
            return None
        if self.db.dialect.slot_functions:
            return take_in_one(self.db, waiter_id, names)
        query, params = qs.SELECT_HANDOFF_EXISTS, {"w": waiter_id}
        if self.db.dialect.autocommit_statements:
            found = self.db.execute_alone(query, params)
        else:
            with self.db.read() as tx:
                found = tx.execute(query, params)
        if not found:
            return None
        now = self.clock.now()
        with self.db.write() as tx:
            return self.handoff.take(tx, waiter_id, names, now)

    @property
    def reads_handoffs(self) -> bool:
        """Whether a waiter may learn of its grant with a read (:meth:`read_handoff`).

        Where every write waits for the one write lock (SQLite), a write
        transaction to take a grant costs every grant one more turn of that lock.
        """
        return self.db.dialect.serialize_writes and not self.db.dialect.slot_functions

    def read_handoff(self, waiter_id: str, names: Sequence[str]) -> Attempt | None:
        """The grant handed to ``waiter_id``, left in place (see ``Handoff.peek``); or None."""
        with self.db.read() as tx:
            return self.handoff.peek(tx, waiter_id, names)

    def refresh_waiters(self, waiter_ids: Sequence[str]) -> None:
        """Keep the places of requests still waiting: their rows' expiry moved on.

        A server holding many requests refreshes them all this way, a statement
        per 500, instead of relying on each request's re-attempt: under load
        those queue behind one another, and a row not refreshed in time would
        expire and its request lose its place. A row another transaction has
        locked (being granted or dequeued) is skipped: that one is being handled.
        """
        ids = list(dict.fromkeys(waiter_ids))
        if not ids:
            return
        now = self.clock.now()
        expires = now + self.settings.waiter_ttl_seconds
        with self.db.write() as tx:
            skip = tx.dialect.skip_locked
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                tx.execute(
                    qs.refresh_waiters(marks("w", len(chunk)), skip),
                    bind("w", chunk, {"e": expires, "now": now}),
                )

    def cancel_slot_wait(self, waiter_id: str) -> list[WakeTarget]:
        """Remove a waiting request from every queue, giving back a grant it never took.

        The room it leaves (its place, or the slots handed to it) is handed on
        to whoever is next; those granted are returned to be notified.
        """
        now = self.clock.now()
        with self.db.write() as tx:
            return self.handoff.leave(tx, waiter_id, now)

    def release_slots(
        self, lease_id: str, *, handed_to: str | None = None
    ) -> tuple[bool, list[WakeTarget]]:
        """Give a lease's slots back. True when the lease was still whole (not reaped).

        ``handed_to``: the waiter a release handed this lease to, which read its
        grant and left it in place (:meth:`read_handoff`): that row goes too.
        """
        now = self.clock.now()
        if self.db.dialect.slot_functions:
            # One statement, the handoff included: the limits' locks are held
            # for the database's work alone (store/slots/pg.py).
            return release_in_one(self.db, self.events, self.settings, lease_id, now)
        with self.db.write() as tx:
            if tx.dialect.row_locks:
                # Row locks: take the limits' locks first, in name order, as acquire does.
                names = [r[0] for r in tx.execute(qs.SELECT_LEASE_LIMITS, {"id": lease_id})]
                lock(tx, sorted(names))
            if handed_to:
                tx.execute(qs.DELETE_HANDOFF_OF_LEASE, {"w": handed_to, "id": lease_id})
            rows, crowded = release_in(self.events, tx, lease_id, now)
            if not rows:
                return False, []
            intact = all(r[3] != DOOMED for r in rows)
            # Direct handoff: the freed slots go to the head of the queue now, in
            # this transaction, so they are never idle between two transactions.
            wake = self.handoff.hand_off(tx, crowded, now) if crowded else []
        return intact, wake

    def renew_leases(self, lease_ids: Sequence[str], lease_seconds: float) -> list[str]:
        """Extend leases by ``lease_seconds`` from now; returns the ids that were lost."""
        if not lease_ids:
            return []
        now = self.clock.now()
        ids = list(dict.fromkeys(lease_ids))
        with self.db.write() as tx:
            alive: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = tx.execute(
                    qs.renew_leases(marks("l", len(chunk))),
                    bind("l", chunk, {"e": now + lease_seconds, "doomed": DOOMED}),
                )
                alive.update(r[0] for r in rows)
        return [i for i in ids if i not in alive]


__all__ = ["Slots", "next_seq"]
