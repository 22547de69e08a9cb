"""Direct handoff: slots that free up go to the head of the queue in the same transaction.

Whatever frees slots or makes room (a release, a cancel of a waiter ahead or
of an untaken grant, a reap, a limit raised, enabled, reset or deleted) calls
:meth:`Handoff.hand_off` with the limits it locked: the requests at the head
of their queues are granted there, each decided by the same rule an acquire
applies, their leases created from their waiter rows. The grant waits in
``handoffs`` until its waiter takes it by its id (:meth:`Handoff.take`); a
cancel deleting the same row first gives the slots back and hands them on.
On SQLite a waiter reads its grant instead (:meth:`Handoff.peek`) and the row
stays until the lease's release: its process (``slot_policy.py``) marks it
taken, so a cancel there no longer gives it back, and a write transaction per
grant is saved under the store's one write lock.
Only the granted waiters are returned as :class:`WakeTarget`, to be notified
after the commit (``store/wakeups.py``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from headway.core.attempts import Attempt
from headway.core.clock import Clock
from headway.core.limits import (
    Mode,
    ProcessInfo,
    QueuedRequest,
    SlotGrant,
    WakeTarget,
    decide,
    plan_wakeups,
    queue_depth,
    released,
)
from headway.exceptions import LimitClosed, ValidationError
from headway.settings import Settings
from headway.store.db import Database, Row, Tx
from headway.store.events import Events
from headway.store.queries import limits as ql
from headway.store.queries import slots as qs
from headway.store.slots.pg import hand_off_in
from headway.store.slots.rows import (
    DOOMED,
    bind,
    dequeue,
    limit_states,
    lock,
    marks,
    read_for_acquire,
    release_in,
    state_of,
    try_lock,
    unlimited,
    write_grant,
)
from headway.store.wakeups_pg import notify_in_transaction


def _names_of(text: str) -> list[str]:
    """The names a waiter row's ``request_names`` holds (none if it cannot be read)."""
    try:
        names = json.loads(text)
    except ValueError:
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


class Handoff:
    """Handing freed slots to the head of the queue, and taking or giving back such grants.

    Every method runs inside the caller's transaction, on limits it locked;
    a part of the store that frees slots holds this part and calls it.
    """

    def __init__(self, db: Database, settings: Settings, clock: Clock, events: Events) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.events = events

    def hand_off(self, tx: Tx, names: Sequence[str], now: float) -> list[WakeTarget]:
        """Grant the room on ``names`` (locked by the caller) to the head of their queues.

        Walks the queues in grant order (:func:`plan_wakeups` picks the FIFO
        prefix that fits) and grants each request whose full decision, read
        under the locks, says so: exactly the rule an acquire applies, so the
        order, the all-or-nothing of several names and a rate limit's decay are
        the same whoever grants. Each grant takes the waiter out of the queue,
        creates its lease from its row, and leaves the grant in ``handoffs``
        for the waiter to take by its id. Returns the waiters to notify: the
        granted ones, and the few left to retry by themselves (below); nobody
        else is woken.
        """
        if not names:
            return []
        if tx.dialect.slot_functions:
            # PostgreSQL: the same walk, in the database, one round trip.
            return hand_off_in(tx, self.events, self.settings, names, now)
        states = {s.name: s for s in limit_states(tx, names, now)}
        # Only the head of each queue can be granted or stop the walk
        # (``queue_depth``): a release behind a thousand waiters reads a few.
        if len(names) == 1:
            # The usual release, of one limit: its head's rows in one statement.
            depth = queue_depth(states.get(names[0]))
            rows = tx.execute(
                qs.SELECT_HEAD_WAITERS if depth is None else qs.SELECT_HEAD_WAITERS_TO_DEPTH,
                {"name": names[0], "now": now, "depth": depth},
            )
        else:
            heads: set[str] = set()
            for name in names:
                depth = queue_depth(states.get(name))
                heads.update(
                    r[0]
                    for r in tx.execute(
                        qs.SELECT_QUEUE_HEAD if depth is None else qs.SELECT_QUEUE_HEAD_TO_DEPTH,
                        {"name": name, "now": now, "depth": depth},
                    )
                )
            ordered = sorted(heads)
            rows = tx.execute(
                qs.select_live_waiters(marks("w", len(ordered))),
                bind("w", ordered, {"now": now}),
            ) if ordered else []  # fmt: skip
        if not rows:
            return []
        others = sorted({r[1] for r in rows} - states.keys())
        states.update((s.name, s) for s in limit_states(tx, others, now))
        free = {s.name: s.free for s in states.values() if s.active}
        requests: dict[str, QueuedRequest] = {}
        first: dict[str, Row] = {}
        # Names a request asked for beyond its rows (not limited when it queued).
        asked: dict[str, set[str]] = {}
        for row in rows:
            waiter_id, name = row[0], row[1]
            if row[15] is not None:
                asked.setdefault(waiter_id, set()).update(_names_of(row[15]))
            req = requests.get(waiter_id)
            requests[waiter_id] = QueuedRequest(
                waiter_id,
                int(row[3]),
                int(row[4]),
                int(row[2]),
                (req.names if req else frozenset()) | {name},
            )
            first.setdefault(waiter_id, row)
        locked = set(names)
        # The limits as this transaction has them, kept up to date with each grant.
        current = dict(states)
        # Within one limit's queue, while every request planned so far was granted,
        # the next one planned on that limit alone is at its head: nothing waits
        # ahead of it, and the limit is as ``current`` has it (no read again).
        in_order = len(names) == 1
        woken: list[WakeTarget] = []
        # Limits beyond ``names`` whose queue a granted request left: the next
        # there may now go (it was waiting behind this one).
        left: set[str] = set()
        for waiter_id in plan_wakeups(free, requests.values()):
            req, row = requests[waiter_id], first[waiter_id]
            target = WakeTarget(waiter_id, row[5], row[6], int(row[7]))
            # Every name it asked for, all or nothing: exactly as its own attempt.
            wanted = sorted(req.names | asked.get(waiter_id, set()))
            extra = [n for n in wanted if n not in locked]
            if extra and tx.dialect.row_locks:
                # Its other limits are not locked by this transaction. Waiting for
                # their locks here, out of name order, could deadlock with a
                # transaction that holds them and waits for ours; so they are
                # taken only if free this instant (SKIP LOCKED never waits).
                # Otherwise the request is woken to retry by itself, taking every
                # lock in name order: the wake-and-retry path. It stays queued
                # meanwhile, so nobody behind it passes it.
                got = try_lock(tx, extra)
                locked.update(got)
                if len(got) < len(extra):
                    woken.append(target)
                    in_order = False
                    continue
            if row[13] is None:
                woken.append(target)  # queued by an older version: no lease length
                in_order = False
                continue
            mode: Mode = "rate" if row[12] == "rate" else "concurrency"
            ahead: dict[str, tuple[int, int]]
            if in_order and wanted == list(names) and names[0] in current:
                states, ahead = {names[0]: current[names[0]]}, {}
            else:
                states, ahead = read_for_acquire(tx, wanted, req.priority, req.seq, now)
            try:
                decision = decide(wanted, req.slots, mode, states, ahead)
            except (ValidationError, LimitClosed):
                # It can never be granted as asked (its limit shrank below it, or
                # to 0): woken, its own attempt tells its caller why.
                woken.append(target)
                in_order = False
                continue
            if not decision.grant:
                in_order = False
                continue
            for n in decision.limited:
                taken = states[n]
                current[n] = dataclasses.replace(taken, active_slots=taken.active_slots + req.slots)
            process = ProcessInfo(int(row[7]), row[6], row[9], int(row[8]))
            grant = write_grant(
                self.events,
                tx,
                decision,
                states,
                req.slots,
                mode,
                row[10],
                row[11],
                process,
                float(row[13]),
                now,
                waiter_id,
                max(0.0, now - float(row[14])),
            )
            self.record(tx, waiter_id, grant, now)
            woken.append(target)
            left.update(n for n in wanted if n not in names)
        # PostgreSQL: NOTIFY now, delivered at commit (see store/wakeups_pg.py).
        notified = notify_in_transaction(tx, woken)
        if left:
            # Those limits are locked here (all of SQLite; on PostgreSQL the
            # try-locks above), and each pass grants at least one request, so
            # this ends: the rule holds whoever frees the room, and however.
            notified += self.hand_off(tx, sorted(left), now)
        return notified

    def record(self, tx: Tx, waiter_id: str, grant: SlotGrant, now: float) -> None:
        # Forgotten with its lease: a waiter that never comes back has the lease
        # reaped like any other. A rate grant (no lease) is kept a waiter TTL.
        """Leave ``grant`` in ``handoffs`` for ``waiter_id`` to take by its id."""
        forget = (
            grant.expires if grant.expires is not None else now + self.settings.waiter_ttl_seconds
        )
        tx.execute(
            qs.INSERT_HANDOFF,
            {
                "w": waiter_id,
                "lease": grant.lease_id,
                "names": json.dumps(list(grant.names)),
                "slots": grant.slots,
                "mode": grant.mode,
                "seconds": grant.lease_seconds,
                "lease_expires": grant.expires,
                "waited": grant.waited_seconds,
                "now": now,
                "forget": forget,
            },
        )

    def take(self, tx: Tx, waiter_id: str, names: Sequence[str], now: float) -> Attempt | None:
        """Take the grant a release left for ``waiter_id``; None when there is none.

        Deleting the row is what makes it the waiter's: a cancel racing with
        this deletes the same row, and only one of the two finds it (the
        cancel then gives the slots back). ``gone`` when its lease was reaped
        meanwhile (the waiter came back after the lease expired).
        """
        row = tx.one(qs.TAKE_HANDOFF, {"w": waiter_id})
        return None if row is None else self._grant_of(tx, row, names)

    def peek(self, tx: Tx, waiter_id: str, names: Sequence[str]) -> Attempt | None:
        """The grant left for ``waiter_id``, read and left in place; None when there is none.

        For a waiter whose process keeps it from being given back meanwhile
        (``SlotPolicy`` marks it taken, and its release deletes the row): it
        learns of its grant with a read, not a write transaction of its own.
        """
        row = tx.one(qs.SELECT_HANDOFF, {"w": waiter_id})
        return None if row is None else self._grant_of(tx, row, names)

    def _grant_of(self, tx: Tx, row: Row, names: Sequence[str]) -> Attempt:
        lease_id: str | None = row[0]
        granted = tuple(str(n) for n in json.loads(row[1]))
        expires = None if row[5] is None else float(row[5])
        if lease_id is not None:
            held = tx.one(qs.SELECT_LEASE_EXPIRES, {"id": lease_id})
            if held is None or held[0] is None or float(held[0]) <= DOOMED:
                return Attempt(gone=True)
            expires = float(held[0])
        unknown, inactive = unlimited(tx, [n for n in names if n not in granted])
        mode: Mode = "rate" if row[3] == "rate" else "concurrency"
        seconds = None if row[4] is None else float(row[4])
        return Attempt(
            grant=SlotGrant(
                lease_id, granted, int(row[2]), mode, unknown, inactive, expires, seconds,
                float(row[6]),
            )
        )  # fmt: skip

    def give_back(self, tx: Tx, waiter_id: str, now: float) -> list[str]:
        """Return the grant handed to ``waiter_id`` that it never took (its limits locked).

        Returns the limits whose slots came back.
        """
        row = tx.one(qs.GIVE_BACK_HANDOFF, {"w": waiter_id})
        if row is None:
            return []
        if row[0] is not None:
            rows, _ = release_in(self.events, tx, str(row[0]), now)
            return sorted({r[0] for r in rows})
        # Rate tokens the waiter never used: given back, as if never taken.
        names = sorted(str(n) for n in json.loads(row[1]))
        for name in names:
            current = tx.one(ql.SELECT_LIMIT, {"name": name})
            if current is None:
                continue
            state = state_of(current, now)
            tx.execute(
                qs.RETURN_TOKENS,
                {"v": released(state.active_slots, int(row[2])), "now": now, "name": name},
            )
        return names

    def wake_unfit(self, tx: Tx, name: str, limit: int, now: float) -> list[WakeTarget]:
        """Wake the waiters of ``name`` a new ``limit`` can never admit (it is locked).

        Those asking more slots than it has (every one, at 0) are refused by their
        own next attempt: woken now, they learn it at once instead of at their
        next periodic look. Nothing else changes.
        """
        rows = tx.execute(qs.SELECT_UNFIT_WAITERS, {"name": name, "now": now, "limit": limit})
        targets = [WakeTarget(r[0], r[1], r[2], int(r[3])) for r in rows]
        return notify_in_transaction(tx, targets) if targets else []

    def unqueue_deleted(self, tx: Tx, name: str, now: float) -> list[WakeTarget]:
        """Take the waiters of a limit being deleted out of its queue (it is locked).

        A request that waited on that limit alone now asks for a name that is
        not limited: it is handed an empty grant (nothing held, the name
        reported unknown), as its own attempt would find. One also queued on
        other limits is woken to retry there: those limits are not locked here.
        """
        rows = tx.execute(qs.DELETE_WAITERS_ON_LIMIT, {"name": name})
        live = [r for r in rows if float(r[7]) > now]
        if not live:
            return []
        elsewhere = {
            r[0]
            for r in tx.execute(
                qs.select_queued_waiters(marks("w", len(live))),
                bind("w", [r[0] for r in live], {}),
            )
        }
        for r in live:
            if r[0] not in elsewhere:
                mode: Mode = "rate" if r[2] == "rate" else "concurrency"
                waited = max(0.0, now - float(r[3]))
                nothing = SlotGrant(None, (), int(r[1]), mode, waited_seconds=waited)
                self.record(tx, r[0], nothing, now)
        targets = [WakeTarget(r[0], r[4], r[5], int(r[6])) for r in live]
        return notify_in_transaction(tx, targets)

    def leave(self, tx: Tx, waiter_id: str, now: float) -> list[WakeTarget]:
        """Take a request out of every queue, giving back a grant it never took.

        Its queues, then any grant: a release committing in between has moved it
        from the first to the second, and both are locked here. The room it
        leaves is handed on; those granted are returned to be notified.
        """
        if not waiter_id:
            return []
        queued = {r[0] for r in tx.execute(qs.SELECT_WAITER_LIMITS, {"w": waiter_id})}
        handed = tx.one(qs.SELECT_HANDOFF_NAMES, {"w": waiter_id})
        if not queued and handed is None:
            return []
        held = {str(n) for n in json.loads(handed[0])} if handed is not None else set()
        names = sorted(queued | held)
        lock(tx, names)
        left = dequeue(tx, waiter_id, within=names) if names else []
        back = self.give_back(tx, waiter_id, now)
        return self.hand_off(tx, sorted({*left, *back}), now)


__all__ = ["Handoff"]
