"""Reaping: leases and waiters whose holder is gone, or whose time ran out, are removed.

A lease or waiter is reaped when it expired, or at once when its process is
certainly gone (same node, pid missing or reused: ``headway._process``):
lazily whenever a request would have to wait (:meth:`Reaper.reap`, inside the
acquire's transaction), and by :meth:`Reaper.sweep_slots`, which the server
runs periodically and embedded processes before showing a limit. Slots a reap
frees are handed on at once (``store/slots/handoff.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from headway._process import current_process, start_times
from headway.core.clock import Clock
from headway.core.limits import ProcessRecord, WakeTarget, is_dead
from headway.store.db import Database, Row, Tx
from headway.store.dialects import fails_whole_pass
from headway.store.events import Events
from headway.store.queries import slots as qs
from headway.store.slots.handoff import Handoff
from headway.store.slots.rows import DOOMED, bind, dequeue, lock, marks

logger = logging.getLogger("headway.store")

# How often one store re-checks the processes behind the leases of a limit it
# waits on (reading /proc); expiry is checked on every attempt regardless.
_LIVENESS_EVERY_SECONDS = 0.5


class Reaper:
    """Removing expired and dead leases and waiters, lazily and by sweeps."""

    def __init__(self, db: Database, clock: Clock, events: Events, handoff: Handoff) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.handoff = handoff
        #: When each limit's holders may next be looked up in /proc (by this store).
        self._liveness_checked: dict[str, float] = {}
        #: Limits whose sweep failed: swept on their own from then on.
        self._limits_failing: set[str] = set()

    def sweep_slots(self, names: Sequence[str] | None = None) -> tuple[int, list[WakeTarget]]:
        """Reap expired leases and waiters (and those of dead processes of this node).

        On every limit, or only on ``names``. The server runs this periodically;
        embedded processes reap lazily, and before showing a limit. Returns how
        many leases were reaped and the waiters to notify.

        One damaged record never stops the others: a row that cannot be judged
        is left alone and reported, and if the sweep of all limits at once still
        fails, each limit is swept in its own transaction and a failing one is
        skipped (logged, recorded as ``sweep.skipped``). A StoreError (the store
        itself is away) fails the whole sweep: the next one tries again.
        """
        now = self.clock.now()
        node = current_process().node
        if names is None:
            try:
                self.recount_queued()
            except Exception as exc:  # a safety net only: never a reason not to reap
                if fails_whole_pass(exc):
                    raise
                self.events.report_skipped("queue count", "*", exc)
            with self.db.read() as tx:
                rows = tx.execute(qs.SELECT_LIMITS_TO_SWEEP, {"now": now, "node": node})
            names = [r[0] for r in rows]
        names = sorted(set(names))
        if not names:
            self._forget_stale_handoffs(now)
            return 0, []
        # Limits whose sweep failed before are swept on their own, every time:
        # the others keep sweeping in one transaction.
        failing: set[str] = self._limits_failing
        alone = [n for n in names if n in failing]
        together = [n for n in names if n not in failing]
        reaped, wake = 0, list[WakeTarget]()
        if together:
            try:
                reaped, wake = self._sweep_limits(together, now)
            except Exception as exc:
                if fails_whole_pass(exc):
                    raise
                alone = names  # find which one fails
        for name in alone:
            try:
                count, targets = self._sweep_limits([name], now)
            except Exception as exc:
                if fails_whole_pass(exc):
                    raise
                failing.add(name)
                self.events.report_skipped("limit", name, exc, limit=name)
                continue
            failing.discard(name)
            reaped += count
            wake.extend(targets)
        return reaped, wake

    def _sweep_limits(self, names: Sequence[str], now: float) -> tuple[int, list[WakeTarget]]:
        with self.db.write() as tx:
            lock(tx, names)
            freed, reaped = self.reap(tx, names, now, check_processes=True, force_check=True)
            wake = self.handoff.hand_off(tx, freed, now)
            self._forget_handoffs(tx, now)
        return reaped, wake

    def _forget_stale_handoffs(self, now: float) -> None:
        # Looked for in a read first: on SQLite a write would take the lock every sweep.
        with self.db.read() as tx:
            if tx.one(qs.SELECT_STALE_HANDOFF, {"now": now}) is None:
                return
        with self.db.write() as tx:
            self._forget_handoffs(tx, now)

    def _forget_handoffs(self, tx: Tx, now: float) -> None:
        # Grants never taken, past their lease's expiry (the lease itself is reaped
        # as any other): a waiter coming back later finds nothing, as if expired.
        tx.execute(qs.DELETE_STALE_HANDOFFS, {"now": now})

    def recount_queued(self) -> list[str]:
        """Set ``limits.queued`` from the waiter rows where they disagree; the limits fixed.

        Every statement that adds or removes waiters keeps the count in step, so
        this finds nothing unless that promise was broken; the sweeper runs it
        as a safety net (a count too low would let a newcomer pass the queue).
        """
        # Looked for in a read first: the sweeper runs this often, and a write
        # transaction on SQLite would take the write lock each time.
        with self.db.read() as tx:
            if not tx.execute(qs.SELECT_DRIFTED_QUEUE_COUNTS):
                return []
        with self.db.write() as tx:
            drifted = sorted(r[0] for r in tx.execute(qs.SELECT_DRIFTED_QUEUE_COUNTS))
            if not drifted:
                return []
            # Locked first: the count is then taken with nobody queuing meanwhile.
            lock(tx, drifted)
            tx.execute(qs.recount_queued(marks("n", len(drifted))), bind("n", drifted, {}))
        logger.warning("re-counted the queue of %d limit(s): %s", len(drifted), drifted)
        return drifted

    def probe_due(self, names: Sequence[str], now: float) -> bool:
        """Whether an acquire on ``names`` that must wait judges their holders' processes now.

        As :meth:`reap` does, at most every ``_LIVENESS_EVERY_SECONDS`` per limit
        and store, and only where this process knows its node.
        """
        if current_process().node is None:
            return False
        checked = self._liveness_checked
        return any(checked.get(n, 0.0) <= now for n in names)

    def judge(
        self,
        names: Sequence[str],
        leases: Sequence[Sequence[Any]],
        waiters: Sequence[Sequence[Any]],
        now: float,
        keep_waiter: str | None,
    ) -> tuple[list[str], list[str]]:
        """Of this node's leases and waiters on ``names`` (id, pid, start), those now dead.

        The rows were read under the limits' locks by PostgreSQL's acquire
        function, which reaps those named here; ``names`` are marked checked,
        as :meth:`reap` marks them when it probes. The caller's own request
        (``keep_waiter``) and this process are alive.
        """
        checked = self._liveness_checked
        for n in names:
            if checked.get(n, 0.0) <= now:
                checked[n] = now + _LIVENESS_EVERY_SECONDS
        me = current_process()
        pids = [int(r[1]) for r in (*leases, *waiters) if int(r[1]) != me.pid]
        starts = start_times(pids) if pids else {}

        def dead(row: Sequence[Any]) -> bool:
            record = ProcessRecord(int(row[1]), me.node, int(row[2]))
            return int(row[1]) != me.pid and is_dead(record, me.node, starts)

        dead_leases = sorted({str(r[0]) for r in leases if dead(r)})
        dead_waiters = sorted({str(r[0]) for r in waiters if r[0] != keep_waiter and dead(r)})
        return dead_leases, dead_waiters

    def reap(
        self,
        tx: Tx,
        names: Sequence[str],
        now: float,
        *,
        check_processes: bool,
        force_check: bool = False,
        keep_waiter: str | None = None,
    ) -> tuple[list[str], int]:
        """Remove expired and dead leases and waiters on ``names`` (already locked).

        Returns the names whose slots or queue changed, and how many leases were
        reaped. ``keep_waiter`` is the caller's own request: alive, whatever its expiry.
        """
        if not names:
            return [], 0
        params = bind("n", names, {"now": now})
        in_names = marks("n", len(names))
        node = current_process().node if check_processes else None
        probe = False
        if node is not None:
            # /proc is read at most every _LIVENESS_EVERY_SECONDS per limit and store.
            checked = self._liveness_checked
            due = [n for n in names if force_check or checked.get(n, 0.0) <= now]
            for n in due:
                checked[n] = now + _LIVENESS_EVERY_SECONDS
            probe = bool(due)
        leases = tx.execute(qs.select_reapable_leases(in_names, every=probe), params)
        waiters = tx.execute(qs.select_reapable_waiters(in_names, every=probe), params)
        mine = current_process()
        local_pids = [
            pid
            for pid, row_node in [(r[3], r[4]) for r in leases] + [(r[2], r[3]) for r in waiters]
            if probe and row_node == node and isinstance(pid, int) and pid != mine.pid
        ]
        starts = start_times(local_pids) if local_pids else {}

        def gone(kind: str, row: Row, expires: Any, pid: Any, row_node: Any, start: Any) -> bool:
            # One row whose values cannot be judged (planted or damaged) is left
            # alone and reported: it must not stop the others from being reaped.
            try:
                if float(expires) <= now:
                    return True
                record = ProcessRecord(int(pid), row_node, int(start))
                return probe and is_dead(record, node, starts)
            except (TypeError, ValueError, OverflowError) as exc:
                self.events.report_skipped(kind, str(row[0]), exc, limit=row[1])
                return False

        dead_leases = [r for r in leases if gone("lease", r, r[6], r[3], r[4], r[5])]
        dead_waiters = {
            r[0]
            for r in waiters
            if r[0] != keep_waiter and gone("waiter", r, r[5], r[2], r[3], r[4])
        }
        changed: set[str] = set()
        for w in sorted(dead_waiters):
            # Only its rows on these (locked) limits: the rest go when theirs are reaped.
            changed.update(dequeue(tx, w, within=names))
        if dead_leases:
            for r in dead_leases:
                lease_id, name, slots = r[0], r[1], int(r[2])
                tx.execute(qs.DELETE_LEASE_ON_LIMIT, {"id": lease_id, "name": name})
                tx.execute(qs.REAP_SLOTS, {"n": float(slots), "name": name})
                expired = float(r[6]) <= now
                reason = "expired" if expired else "holder process is gone"
                self.events.event(
                    tx,
                    now,
                    "lease.expired" if expired else "lease.reaped",
                    name,
                    slots,
                    f"lease={lease_id} holder={r[7]}:{r[8] or '-'} pid={r[3]} ({reason})",
                    run_id=r[8],  # the run holding it (a user-chosen id names none)
                )
                changed.add(name)
            # The lease's rows on other limits are doomed: their owner can no longer
            # renew them, and whoever next touches those limits reaps them.
            tx.executemany(qs.DOOM_LEASE, [{"id": r[0], "doomed": DOOMED} for r in dead_leases])
        return sorted(changed), len({r[0] for r in dead_leases})


__all__ = ["Reaper"]
