"""Events, histograms and limit counters: what headway records so it can explain itself.

**Events** are rows of ``events``, written inside the transaction that does
what they record, so an event exists exactly when its change committed:

========================  =====================================================
``slot.granted``          slots taken (``seconds``: how long the request waited)
``slot.denied``           a request queued: the limit was full or others waited
``slot.released``         slots given back (``seconds``: how long they were held)
``slot.withdrawn``        a task run's wait taken out: its run ended or is cancelling
``slot.refused``          a task run of an ended or cancelling run asked again: refused
``lease.expired``         a lease reaped because nobody renewed it in time
``lease.reaped``          a lease reaped because its holder process is gone
``limit.*``               a limit created, updated, reset or deleted
``flow_run.claimed``      a worker claimed a run (``seconds``: due -> claimed)
``flow_run.*``            collision strategies, run leases that expired
``sweep.skipped``         a background pass left one record it could not handle
                          (a damaged lease, waiter or run): the others went on
``state.<TYPE>``          a state change, read from ``states`` (never copied)
========================  =====================================================

Grants, denials and releases happen thousands of times a second: a process
buffers them and writes them in one batch every
``FLUSH_INTERVAL_SECONDS`` (``store/event_buffer.py``; and when its store closes or the process
exits), which costs a few microseconds per event instead of an indexed insert
in every slot transaction. Readers in the same process flush first; other
processes see them within the interval. A process killed outright loses at
most its last interval of them; rarer events (reaps, limits, claims) are
written in the transaction that makes them.

State changes are not copied into ``events``: the ``states`` table already
holds every one (task runs' written in batches by the SDK), and the feed reads
it alongside. A feed without a run filter shows flow runs' state changes only;
``run_id`` shows that run's, task runs included.

**Histograms** (``slot_wait`` per limit, ``claim_latency`` per work pool) are
written and read through this part too; their buckets are ``store/histograms.py``'s.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from headway.core.clock import Clock
from headway.core.events import (
    MAX_EVENTS,
    EventPage,
    Histogram,
    LimitStats,
    event_cursor,
    parse_cursor,
)
from headway.core.limits import ProcessInfo, decayed
from headway.core.utilization import Utilization, utilization_while_waiting
from headway.exceptions import ValidationError
from headway.settings import Settings
from headway.store.db import Database, Row, Tx
from headway.store.dialects import fails_whole_pass
from headway.store.event_buffer import (
    EventBuffer,
    EventRow,
    expand,
    flush_at_exit,
    flush_loop,
    observations,
)
from headway.store.event_feed import event_rows, state_rows
from headway.store.histograms import Histograms
from headway.store.queries import events as q
from headway.store.sql import in_list

_RUN_ID_MAX = 36
#: How long closing a store waits for its event flusher to finish what it writes.
_CLOSE_WAIT_SECONDS = 10.0

logger = logging.getLogger("headway.store")


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


class Events:
    """Writing and reading events, histograms and limit counters: the store's events part.

    Every part that records what it does holds this one; events written in a
    transaction take its ``tx``, frequent ones are buffered (``buffer_rows``,
    ``slot_events``, ``released_events``) and written by a flusher thread.
    """

    def __init__(
        self, db: Database, settings: Settings, clock: Clock, histograms: Histograms
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.histograms = histograms
        #: This process's buffer of frequent events (made at the first one).
        self._events_buffer: EventBuffer | None = None
        #: Records a background pass skipped, reported once each.
        self._skipped_reported: set[tuple[str, str]] = set()

    # -- writing (inside the caller's transaction) ------------------------------------
    def event(
        self,
        tx: Tx,
        now: float,
        kind: str,
        limit_name: str | None,
        slots: int | None,
        detail: str | None,
        run_id: str | None = None,
        seconds: float | None = None,
    ) -> None:
        """Record one event in ``tx``."""
        self.write_rows(tx, [(now, kind, run_id, limit_name, slots, seconds, detail)])

    def write_rows(self, tx: Tx, rows: Sequence[EventRow]) -> None:
        """Record events ``(time, kind, run id, limit, slots, seconds, detail)`` in ``tx``."""
        if not rows:
            return
        params = [
            {
                "ts": ts,
                "kind": kind,
                # A holder id that is not a run id (user-chosen) names no run.
                "run": run if run and len(run) <= _RUN_ID_MAX else None,
                "name": name or None,
                "slots": slots,
                "seconds": seconds,
                "detail": detail,
            }
            for ts, kind, run, name, slots, seconds, detail in rows
        ]
        if len(params) == 1:
            tx.execute(q.INSERT_EVENT, params[0])
        else:
            tx.executemany(q.INSERT_EVENT, params)

    def report_skipped(
        self, what: str, name: str, exc: BaseException, *, limit: str | None = None
    ) -> None:
        """Log and record (``sweep.skipped``) one record a background pass could not handle.

        The pass goes on with the others. Each record is reported once per store
        object: a pass that meets it again every few seconds does not flood the log.
        """
        seen: set[tuple[str, str]] = self._skipped_reported
        if (what, name) in seen:
            return
        seen.add((what, name))
        reason = f"{type(exc).__name__}: {exc}"[:500]
        logger.error(
            "%s %s skipped by a background pass: %s",
            what,
            name,
            reason,
            extra={"action": "sweep.skipped", "record": f"{what}:{name}", "reason": reason},
        )
        run_id = name if what == "run" else None
        detail = f"{what} {name}: {reason}"
        now = self.clock.now()
        self.buffer_rows([(now, "sweep.skipped", run_id, limit, None, None, detail)])

    def buffer_rows(self, rows: Sequence[EventRow]) -> None:
        """Queue frequent events for the next batch write (see the module docstring)."""
        self._queue(("rows", rows))

    def slot_events(
        self,
        tx: Tx | None,
        now: float,
        kind: str,
        names: Sequence[str],
        slots: int,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        lease_id: str | None,
        seconds: float | None,
        extra: str = "",
    ) -> None:
        """Record a grant or denial on each of ``names``: who, where, which lease (buffered).

        Only the facts are queued; the flusher formats them, so the slot
        transaction that calls this is not held up (``tx`` is not written to).
        """
        self._queue(
            ("slot", now, kind, names, slots, holder_kind, holder_id, process.pid,
             process.host, lease_id, seconds, extra)
        )  # fmt: skip

    def released_events(self, now: float, lease_id: str, rows: Sequence[Row]) -> None:
        """Record the release of a lease: ``rows`` are its deleted rows (limit, slots,
        created, expires, holder kind, holder id); buffered like grants."""
        self._queue(("released", now, lease_id, rows))

    def _queue(self, item: tuple[Any, ...]) -> None:
        buffer = self._events_buffer
        if buffer is None or buffer.pid != os.getpid():
            buffer = self._start_buffer()
        items = buffer.items
        if not items:
            buffer.ready.set()
        items.append(item)

    def _start_buffer(self) -> EventBuffer:
        buffer = self._events_buffer
        if buffer is not None and buffer.pid == os.getpid() and buffer.thread is not None:
            return buffer
        # First use in this process (a forked child starts afresh: the parent
        # writes its own events).
        buffer = EventBuffer()
        ref = weakref.ref(self)
        buffer.thread = threading.Thread(
            target=flush_loop, args=(ref, buffer), name="headway-events", daemon=True
        )
        self._events_buffer = buffer
        buffer.thread.start()
        atexit.register(flush_at_exit, ref)
        return buffer

    def flush_events(self) -> None:
        """Write the events this process buffered (readers call it before reading)."""
        buffer = self._events_buffer
        if buffer is None or buffer.pid != os.getpid():
            return
        with buffer.flushing:
            items = buffer.drain()
            if not items:
                return
            try:
                rows = [row for item in items for row in expand(item)]
                with self.db.write() as tx:
                    self.write_rows(tx, rows)
                    self.histograms.write_observations(tx, observations(items))
            except Exception as exc:
                if fails_whole_pass(exc):
                    buffer.items.extendleft(reversed(items))  # written next time
                    raise
                # One event the store refuses must not hold back all the others
                # (they would be retried, and refused, together forever).
                self._write_each(buffer, items)
            except BaseException:
                buffer.items.extendleft(reversed(items))
                raise

    def _write_each(self, buffer: EventBuffer, items: list[tuple[Any, ...]]) -> None:
        """Write ``items`` one transaction each, dropping (and logging) any that fails alone."""
        for done, item in enumerate(items):
            try:
                rows = expand(item)
                with self.db.write() as tx:
                    self.write_rows(tx, rows)
                    self.histograms.write_observations(tx, observations([item]))
            except Exception as exc:
                if fails_whole_pass(exc):
                    buffer.items.extendleft(reversed(items[done:]))
                    raise
                logger.error(
                    "dropped an event the store refuses: %s: %s",
                    type(exc).__name__,
                    exc,
                    extra={"action": "events", "event": str(item[:3])[:200]},
                )

    def close_events(self) -> None:
        """Write what is buffered and stop the flusher (the store is closing)."""
        buffer = self._events_buffer
        if buffer is None or buffer.pid != os.getpid():
            return
        try:
            self.flush_events()
        finally:
            buffer.closed = True
            buffer.stopping.set()
            buffer.ready.set()
            self._events_buffer = None
            # The flusher may be pruning: the store's connections close after it ends.
            thread = buffer.thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(_CLOSE_WAIT_SECONDS)

    def observe(self, tx: Tx, metric: str, labels: Sequence[str], value: float) -> None:
        """Count one observation of ``value`` in the histogram ``metric`` of each label."""
        self.histograms.observe(tx, metric, labels, value)

    def observe_later(self, metric: str, labels: Sequence[str], value: float) -> None:
        """Like :meth:`observe`, but buffered with the slot events and written in their batch.

        A slot wait is observed at every contended grant: an upsert in each
        grant's transaction cost every grant a statement under the limit's lock.
        Readers of histograms flush first, as readers of events do.
        """
        self._queue(("observe", metric, tuple(labels), value))

    # -- reading -------------------------------------------------------------------
    def read_events(
        self,
        *,
        run_id: str | None = None,
        limit_name: str | None = None,
        since: float | None = None,
        kind: str | None = None,
        after: str | None = None,
        limit: int = 100,
        flush: bool = True,
    ) -> EventPage:
        """Events in time order, filtered; the newest ``limit`` of them, or those after a cursor.

        ``kind`` is a prefix (``slot``, ``slot.granted``, ``state``, ``state.RUNNING``).
        The page's cursor, passed back as ``after``, returns only later events (follow).
        ``flush=False`` skips writing this process's buffered events first (for a
        caller already inside a read transaction, which must not write).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
            raise ValidationError(f"limit must be between 1 and {MAX_EVENTS}, got {limit!r}")
        start = parse_cursor(after)
        tail = start is None
        if flush:
            self.flush_events()
        with self.db.read() as tx:
            if start is None:
                ev_row = tx.one(q.SELECT_LAST_EVENT_ID)
                st_row = tx.one(q.SELECT_LAST_STATE_ID)
                ev_top = int(ev_row[0]) if ev_row else 0
                st_top = int(st_row[0]) if st_row else 0
                ev_after, st_after = 0, 0
            else:
                ev_after, st_after = start
            events = event_rows(tx, run_id, limit_name, since, kind, ev_after, limit, tail)
            states = state_rows(tx, run_id, limit_name, since, kind, st_after, limit, tail)
        merged = sorted(events + states, key=lambda e: (e.timestamp, e.id[0], int(e.id[1:])))
        if tail:
            return EventPage(tuple(merged[-limit:]), event_cursor(ev_top, st_top))
        kept = merged[:limit]
        ev_next = max([int(e.id[1:]) for e in kept if e.id[0] == "e"], default=ev_after)
        st_next = max([int(e.id[1:]) for e in kept if e.id[0] == "s"], default=st_after)
        return EventPage(tuple(kept), event_cursor(ev_next, st_next))

    def prune_events(self, older_than_seconds: float, *, batch: int = 10_000) -> int:
        """Delete up to ``batch`` events older than ``older_than_seconds``; how many went."""
        cut = self.clock.now() - older_than_seconds
        with self.db.write() as tx:
            return tx.rowcount(q.DELETE_EVENTS_BEFORE, {"cut": cut, "n": batch})

    def read_histograms(self, metric: str) -> list[Histogram]:
        """Every label's histogram of ``metric``, by label."""
        self.flush_events()  # this process's buffered observations first
        return self.histograms.read_histograms(metric)

    def limit_stats(self, *, prefix: str | None = None) -> list[LimitStats]:
        """Every limit (or those whose name starts with ``prefix``) with its counters."""
        now = self.clock.now()
        query = q.SELECT_LIMIT_STATS
        params: dict[str, Any] = {"now": now}
        if prefix:
            query = q.SELECT_LIMIT_STATS_BY_PREFIX
            params.update(plen=len(prefix), prefix=prefix)
        with self.db.read() as tx:
            rows = tx.execute(query, params)
        return [limit_stats_of(r, now) for r in rows]

    def utilization(
        self, names: Sequence[str] | None, window_seconds: float
    ) -> dict[str, Utilization]:
        """Each limit's utilization while waiting over the last ``window_seconds``.

        From the recorded grants (each says how long it waited) and releases
        (how long it held), with the leases and waiters there are now; every
        limit (``names`` None) or those named. Rate limits hold no slots and are
        left out. Waits that ended without a grant (a timeout, a cancel) are
        not recorded, and events of other processes reach the table within
        their flush interval: the last second may be missing theirs.
        """
        self.flush_events()
        now = self.clock.now()
        since = now - window_seconds
        params: dict[str, Any] = {"since": since}
        query = (
            q.SELECT_SLOT_LIMITS
            if names is None
            else q.select_slot_limits_named(in_list("n", names, params))
        )
        with self.db.read() as tx:
            limits = {str(r[0]): int(r[1]) for r in tx.execute(query, params)}
            if not limits:
                return {}
            first = tx.one(q.SELECT_FIRST_EVENT_ID_SINCE, params)
            events = (
                []
                if first is None or first[0] is None
                else tx.execute(q.SELECT_GRANTS_AND_RELEASES_FROM, {"first": first[0]})
            )
            leases = tx.execute(q.SELECT_LEASE_HOLDS, {})
            waiters = tx.execute(q.SELECT_WAITER_STARTS, {})
        holds: dict[str, list[tuple[float, float, int]]] = {n: [] for n in limits}
        waits: dict[str, list[tuple[float, float]]] = {n: [] for n in limits}
        for name, kind, at, slots, seconds in events:
            if name not in limits or seconds is None:
                continue
            at, seconds = float(at), float(seconds)
            if kind == "slot.released":
                holds[name].append((at - seconds, at, int(slots or 0)))
            elif seconds > 0:
                waits[name].append((at - seconds, at))
        for name, created, slots in leases:
            if name in limits:
                holds[name].append((float(created), now, int(slots)))
        for name, created in waiters:
            if name in limits:
                waits[name].append((float(created), now))
        return {
            name: utilization_while_waiting(holds[name], waits[name], limit, since, now)
            for name, limit in limits.items()
        }


def limit_stats_of(row: Row, now: float) -> LimitStats:
    """A :class:`LimitStats` from the row ``limit_stats`` selects."""
    created = float(row[6])
    hold = float(row[12])
    lifetime = max(now - created, 1e-9)
    # Slot-seconds of the leases given back, and of those still held so far.
    occupied = hold + max(0.0, float(row[15]))
    return LimitStats(
        name=row[0],
        limit=int(row[1]),
        active=bool(row[2]),
        active_slots=decayed(float(row[3]), float(row[4]), float(row[5]), now),
        slot_decay_per_second=float(row[4]),
        waiters=int(row[13]),
        holders=int(row[14]),
        grants=int(row[7]),
        denials=int(row[8]),
        expiries=int(row[9]),
        releases=int(row[10]),
        total_wait_seconds=float(row[11]),
        total_hold_seconds=hold,
        created=_dt(created),
        average_occupancy=min(occupied / lifetime, float(row[1])),
    )


__all__ = ["Events", "limit_stats_of"]
