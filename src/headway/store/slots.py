"""Store operations of the slot engine: limits, leases, waiters. Each is one transaction.

Every operation that changes a limit's occupancy or queue first locks the
limit rows it touches (SQLite: ``BEGIN IMMEDIATE`` locks the database;
PostgreSQL: ``SELECT ... FOR UPDATE`` in name order, so multi-limit requests
never deadlock), then reads, decides with :mod:`headway.core.limits`, and
writes. Operations that free slots (or make room: a limit raised, enabled or
reset, a waiter ahead gone) hand them straight to the head of the queue in the
same transaction (direct handoff, :meth:`SlotStore._handoff`): the waiter's
lease is created from its row and the grant waits in ``handoffs`` for the
waiter to take it by its id. Only the granted waiters are returned as
:class:`WakeTarget`, to be notified after the commit (``store/wakeups.py``).

A lease or waiter is reaped when it expired, or at once when its process is
certainly gone (same node, pid missing or reused): lazily whenever a request
would have to wait, and by :meth:`SlotStore.sweep_slots`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from headway.core.limits import (
    NOT_QUEUED,
    Decision,
    LimitDetail,
    LimitState,
    Mode,
    ProcessInfo,
    ProcessRecord,
    QueuedRequest,
    SlotGrant,
    SlotWait,
    WakeTarget,
    decayed,
    decide,
    is_dead,
    plan_wakeups,
    queue_depth,
    released,
    validate_active_slots,
    validate_decay,
    validate_limit,
    validate_name,
)
from headway.core.models import Holder, Lease, Limit, Waiter, ts_to_dt
from headway.exceptions import (
    ConcurrencySlotAcquisitionError,
    ConflictError,
    ObjectAlreadyExists,
    ObjectNotFound,
    OutcomeUnknown,
    StoreError,
    StoreUnavailable,
    ValidationError,
)
from headway.settings import Settings
from headway.store.db import Database, Row, Tx
from headway.store.dialects import fails_whole_pass
from headway.store.events import SLOT_WAIT, EventStore
from headway.store.wakeups_pg import notify_in_transaction

logger = logging.getLogger("headway.store")

_LIMIT_COLUMNS = (
    "name, slot_limit, active, active_slots, slot_decay_per_second, decayed_at, created,"
    " grants, denials"
)
# How often one store re-checks the processes behind the leases of a limit it
# waits on (reading /proc); expiry is checked on every attempt regardless.
_LIVENESS_EVERY_SECONDS = 0.5
_DOOMED = 0.0  # ``expires`` of the remaining rows of a lease that was reaped
#: The largest pid a process can have (pid_t is a signed 32-bit integer).
_PID_MAX = 2**31 - 1


# -- this process -----------------------------------------------------------------------
def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; None when it is gone (or a zombie).

    Raises LookupError when the process exists but cannot be read (another
    user's process under ``hidepid``): uncertain, so callers treat it as alive.
    It never raises anything else, whatever ``pid`` a lease row carries: a
    sweep that raised here would stop reaping every other lease too.
    """
    if not isinstance(pid, int) or not 0 < pid <= _PID_MAX:
        # No kernel hands out such a pid (Linux caps pid_max at 2**22; pid_t is
        # 32 bits), so the row was forged or damaged and says nothing about its
        # holder. Not provably dead, then: like a holder on another node, it
        # waits for plain expiry. (Judging it dead instead would let any value
        # that os.kill reads as "every process" or "my group", such as 0 or -1,
        # decide a reap.) Expiry still bounds how long it holds anything.
        raise LookupError(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except (OSError, OverflowError, ValueError):
            raise LookupError(pid) from None
        raise LookupError(pid) from None
    except OSError:
        raise LookupError(pid) from None
    try:
        # The command name may contain spaces and parentheses: fields restart after the last ')'.
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            return None  # a zombie holds nothing any more
        return int(fields[19])
    except (ValueError, IndexError):
        raise LookupError(pid) from None  # a /proc format this code does not know: uncertain


def _node_key() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}"[:100]


_current: tuple[int, ProcessInfo] | None = None


def current_process() -> ProcessInfo:
    """This process as lease and waiter rows record it (recomputed after a fork)."""
    global _current
    pid = os.getpid()
    cached = _current
    if cached is not None and cached[0] == pid:
        return cached[1]
    try:
        start = process_start_time(pid) or 0
    except LookupError:
        start = 0
    info = ProcessInfo(pid=pid, host=socket.gethostname(), node=_node_key(), proc_start=start)
    _current = (pid, info)
    return info


def _start_times(pids: Iterable[int]) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    for pid in set(pids):
        try:
            out[pid] = process_start_time(pid)
        except LookupError:
            continue  # unknown: alive
    return out


# -- results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Attempt:
    """The outcome of one acquire attempt, and the waiters to notify after it."""

    grant: SlotGrant | None = None
    wait: SlotWait | None = None
    #: The waiter's rows vanished (cancelled, or expired) and it was not allowed to re-queue.
    gone: bool = False
    wake: tuple[WakeTarget, ...] = ()
    #: Why the request was refused outright: its holder's run has ended (store/run_waits.py).
    refused: str = ""


def _each(tx: Tx, query: str, rows: list[dict[str, Any]]) -> None:
    # executemany costs more than execute for the usual single row.
    if len(rows) == 1:
        tx.execute(query, rows[0])
    else:
        tx.executemany(query, rows)


#: A lease row's columns, and their parameters as ``_lease_params`` names them.
_LEASE_COLUMNS = (
    "lease_id, limit_name, slots, holder_kind, holder_id, pid, host, proc_start, created,"
    " expires, node"
)
_LEASE_VALUES = ":id, :name, :slots, :kind, :holder, :pid, :host, :start, :now, :expires, :node"


#: PostgreSQL's uncontended grant, one statement (see SlotStore._fast_grant_alone).
#: Never for a request that was handed the slots already: a handoff committed
#: before the statement's snapshot is in ``handoffs``; one still in progress
#: then had this request queued on the limit (``queued`` >= 1 in the snapshot's
#: row version, which PostgreSQL checks before it waits for the row lock).
_FAST_GRANT_SQL = (
    "WITH taken AS (UPDATE limits SET active_slots = active_slots + :n,"
    " grants = grants + 1, decayed_at = :now WHERE name = :name AND active"
    " AND slot_decay_per_second = 0 AND queued = 0 AND active_slots + :n <= slot_limit"
    " AND NOT EXISTS (SELECT 1 FROM handoffs WHERE waiter_id = :w)"
    f" RETURNING name) INSERT INTO leases ({_LEASE_COLUMNS})"
    f" SELECT {_LEASE_VALUES.replace(':name', 'name')} FROM taken RETURNING limit_name"
)
#: PostgreSQL's release when nobody waits, one statement (see SlotStore._release_alone).
_RELEASE_SQL = (
    "WITH locked AS (SELECT name, queued FROM limits WHERE name IN (SELECT limit_name FROM"
    " leases WHERE lease_id = :id) ORDER BY name FOR UPDATE), gone AS (DELETE FROM leases"
    " WHERE lease_id = :id AND (SELECT COALESCE(MAX(queued), 0) FROM locked) = 0"
    " RETURNING limit_name,"
    " slots, created, expires, holder_kind, holder_id), upd AS (UPDATE limits SET"
    " active_slots = CASE WHEN active_slots > gone.slots THEN active_slots - gone.slots"
    " ELSE 0 END, releases = releases + 1, total_hold_seconds = total_hold_seconds"
    " + (:now - gone.created) * gone.slots FROM gone WHERE limits.name = gone.limit_name"
    " RETURNING limits.name, limits.queued) SELECT gone.limit_name, gone.slots,"
    " gone.created, gone.expires, gone.holder_kind, gone.holder_id,"
    " COALESCE(upd.queued, 0) FROM gone LEFT JOIN upd ON upd.name = gone.limit_name"
)


def _lease_params(
    lease_id: str,
    name: str,
    slots: int,
    holder_kind: str,
    holder_id: str | None,
    process: ProcessInfo,
    now: float,
    expires: float,
) -> dict[str, Any]:
    return {
        "id": lease_id,
        "name": name,
        "slots": slots,
        "kind": holder_kind,
        "holder": holder_id,
        "pid": process.pid,
        "host": process.host,
        "start": process.proc_start,
        "now": now,
        "expires": expires,
        "node": process.node,
    }


def _marks(prefix: str, count: int) -> str:
    return ", ".join(f":{prefix}{i}" for i in range(count))


def _bind(prefix: str, values: Sequence[Any], params: dict[str, Any]) -> dict[str, Any]:
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
    return params


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


def _limit(row: Row, now: float, waiters: int = 0) -> Limit:
    return Limit(
        name=row[0],
        limit=int(row[1]),
        active=bool(row[2]),
        active_slots=decayed(float(row[3]), float(row[4]), float(row[5]), now),
        slot_decay_per_second=float(row[4]),
        grants=int(row[7]),
        denials=int(row[8]),
        waiters=waiters,
        created=ts_to_dt(row[6]),
    )


def _state(row: Row, now: float) -> LimitState:
    # row: name, slot_limit, active, active_slots, slot_decay_per_second, decayed_at, ...
    return LimitState(
        name=row[0],
        limit=int(row[1]),
        active=bool(row[2]),
        active_slots=decayed(float(row[3]), float(row[4]), float(row[5]), now),
        decay_per_second=float(row[4]),
    )


class SlotStore(EventStore):
    """Limits, leases and waiters. Mixed into :class:`headway.store.store.Store`.

    Grants, denials, releases and reaps are recorded as events in the same
    transaction (``store/events.py``); waits also count in the limit's histogram.
    """

    db: Database
    settings: Settings
    _liveness_checked: dict[str, float]

    # -- limits --------------------------------------------------------------------
    def create_limit(
        self,
        name: str,
        limit: int,
        *,
        active: bool = True,
        slot_decay_per_second: float = 0.0,
        active_slots: int = 0,
    ) -> Limit:
        """Create a limit; ObjectAlreadyExists if the name is taken."""
        name = validate_name(name)
        limit = validate_limit(limit)
        decay = validate_decay(slot_decay_per_second)
        active_slots = validate_active_slots(active_slots)
        now = self.clock.now()
        with self.db.write() as tx:
            created = tx.rowcount(
                "INSERT INTO limits (name, slot_limit, active, active_slots,"
                " slot_decay_per_second, decayed_at, created, updated) VALUES (:name, :limit,"
                " :active, :slots, :decay, :now, :now, :now) ON CONFLICT (name) DO NOTHING",
                {
                    "name": name,
                    "limit": limit,
                    "active": bool(active),
                    "slots": float(active_slots),
                    "decay": decay,
                    "now": now,
                },
            )
            if not created:
                raise ObjectAlreadyExists(f"a limit named {name!r} already exists")
            self._event(tx, now, "limit.created", name, limit, f"active={bool(active)}")
            row = self._limit_row(tx, name)
        return _limit(row, now)

    def read_limit(self, name: str) -> Limit:
        """One limit with its live waiter count; ObjectNotFound if unknown."""
        now = self.clock.now()
        with self.db.read() as tx:
            rows = self._limits_with_waiters(tx, "WHERE name = :name", {"name": name}, now)
        if not rows:
            raise ObjectNotFound(f"no limit named {name!r}")
        return rows[0]

    def list_limits(self, *, prefix: str | None = None) -> list[Limit]:
        """Every limit (or those whose name starts with ``prefix``), by name."""
        now = self.clock.now()
        where, params = "", {}
        if prefix:
            where = "WHERE substr(name, 1, :plen) = :prefix"
            params = {"plen": len(prefix), "prefix": prefix}
        with self.db.read() as tx:
            return self._limits_with_waiters(tx, where, params, now)

    def _limits_with_waiters(
        self, tx: Tx, where: str, params: dict[str, Any], now: float
    ) -> list[Limit]:
        rows = tx.execute(
            f"SELECT {_LIMIT_COLUMNS}, (SELECT COUNT(*) FROM waiters w"
            " WHERE w.limit_name = limits.name AND w.expires > :now)"
            f" FROM limits {where} ORDER BY name",
            {**params, "now": now},
        )
        return [_limit(r, now, int(r[9])) for r in rows]

    def update_limit(
        self,
        name: str,
        *,
        limit: int | None = None,
        active: bool | None = None,
        slot_decay_per_second: float | None = None,
        active_slots: int | None = None,
    ) -> tuple[Limit, list[WakeTarget]]:
        """Change a limit live: holders keep their slots; the new values govern new grants."""
        new_limit = None if limit is None else validate_limit(limit)
        new_decay = None if slot_decay_per_second is None else validate_decay(slot_decay_per_second)
        new_slots = None if active_slots is None else validate_active_slots(active_slots)
        now = self.clock.now()
        with self.db.write() as tx:
            row = self._lock_one(tx, name)
            state = _state(row, now)
            sets = ["updated = :now", "active_slots = :slots", "decayed_at = :now"]
            # Materialise the decay so far, so a new decay rate applies from now on.
            params: dict[str, Any] = {"name": name, "now": now, "slots": state.active_slots}
            if new_slots is not None:
                params["slots"] = float(new_slots)
            if new_limit is not None:
                sets.append("slot_limit = :limit")
                params["limit"] = new_limit
            if active is not None:
                sets.append("active = :active")
                params["active"] = bool(active)
            if new_decay is not None:
                sets.append("slot_decay_per_second = :decay")
                params["decay"] = new_decay
            tx.execute(f"UPDATE limits SET {', '.join(sets)} WHERE name = :name", params)
            changes = {
                "limit": new_limit,
                "active": active,
                "slot_decay_per_second": new_decay,
                "active_slots": new_slots,
            }
            detail = ", ".join(f"{k}={v}" for k, v in changes.items() if v is not None)
            self._event(tx, now, "limit.updated", name, new_limit, detail)
            wake = self._handoff(tx, [name], now)
            row = self._limit_row(tx, name)
        return _limit(row, now), wake

    def delete_limit(self, name: str, *, force: bool = False) -> list[WakeTarget]:
        """Delete a limit; ConflictError while it has live holders, unless ``force``.

        Its waiters are woken and find the name unlimited; a forced delete takes
        the slots of the holders, who learn it as a lost lease.
        """
        now = self.clock.now()
        with self.db.write() as tx:
            self._lock_one(tx, name)
            self._reap(tx, [name], now, check_processes=True, force_check=True)
            holders = tx.one(
                "SELECT COUNT(DISTINCT lease_id) FROM leases WHERE limit_name = :name",
                {"name": name},
            )
            count = int(holders[0]) if holders else 0
            if count and not force:
                raise ConflictError(
                    f"limit {name!r} has {count} holder(s); wait for them to release,"
                    " or delete with force"
                )
            self._drop_leases(tx, name)
            wake = self._unqueue_deleted(tx, name, now)
            tx.execute("DELETE FROM limits WHERE name = :name", {"name": name})
            self._event(tx, now, "limit.deleted", name, None, f"force={force} holders={count}")
        return wake

    def reset_limit(self, name: str) -> tuple[Limit, list[WakeTarget]]:
        """Free every slot of a limit: its holders lose their leases; waiters are woken."""
        now = self.clock.now()
        with self.db.write() as tx:
            self._lock_one(tx, name)
            dropped = self._drop_leases(tx, name)
            tx.execute(
                "UPDATE limits SET active_slots = 0, decayed_at = :now, updated = :now"
                " WHERE name = :name",
                {"name": name, "now": now},
            )
            self._event(tx, now, "limit.reset", name, None, f"leases={dropped}")
            wake = self._handoff(tx, [name], now)
            row = self._limit_row(tx, name)
        return _limit(row, now), wake

    def inspect_limit(self, name: str) -> LimitDetail:
        """A limit, its holders (oldest first) and its live waiters (in grant order)."""
        now = self.clock.now()
        with self.db.read() as tx:
            limits = self._limits_with_waiters(tx, "WHERE name = :name", {"name": name}, now)
            if not limits:
                raise ObjectNotFound(f"no limit named {name!r}")
            lease_rows = tx.execute(
                "SELECT lease_id, slots, holder_kind, holder_id, pid, host, created, expires"
                " FROM leases WHERE limit_name = :name ORDER BY created, lease_id",
                {"name": name},
            )
            waiter_rows = tx.execute(
                "SELECT seq, slots, priority, holder_kind, holder_id, pid, host, created"
                " FROM waiters WHERE limit_name = :name AND expires > :now"
                " ORDER BY priority DESC, seq",
                {"name": name, "now": now},
            )
        holders = tuple(
            Lease(
                id=r[0],
                slots={name: int(r[1])},
                holder=Holder(kind=r[2], id=r[3], pid=int(r[4]), host=r[5]),
                created=_dt(r[6]),
                expires=_dt(r[7]),
            )
            for r in lease_rows
        )
        waiters = tuple(
            Waiter(
                id=int(r[0]),
                limit_name=name,
                position=i + 1,
                slots=int(r[1]),
                priority=int(r[2]),
                holder=Holder(kind=r[3], id=r[4], pid=int(r[5]), host=r[6]),
                since=_dt(r[7]),
            )
            for i, r in enumerate(waiter_rows)
        )
        return LimitDetail(limits[0], holders, waiters)

    # -- slots ---------------------------------------------------------------------
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
        if (
            self.db.dialect.for_update
            and mode == "concurrency"
            and len(names) == 1
            and holder_kind == "code"
        ):
            fast = self._fast_grant_alone(
                names[0], occupy, holder_kind, holder_id, process, lease_seconds, now, waiter_id
            )
            if fast is not None:
                return Attempt(grant=fast)
        with self.db.write() as tx:
            if holder_kind == "task_run" and holder_id:
                # Before any limit's lock: a cancel takes the run's row, then the limits'.
                ended = self._task_run_ended(tx, holder_id)
                if ended is not None:
                    self._event(tx, now, "slot.refused", None, None, ended, run_id=holder_id)
                    return Attempt(refused=ended, wake=tuple(self._leave(tx, waiter_id, now)))
            seq, waiting_since = NOT_QUEUED, now
            queued_on: set[str] = set()
            if tx.dialect.for_update:
                # Row locks first, in name order; the statements after this one then
                # see every request queued, and every grant handed to this one, by
                # whoever held these locks before us.
                self._lock(tx, names)
            if not new_waiter:
                # Handed the slots by whoever freed them: take the grant, nothing more.
                handed = self._take_handoff(tx, waiter_id, names, now)
                if handed is not None:
                    return handed
                mine = tx.execute(
                    "SELECT seq, created, limit_name FROM waiters WHERE waiter_id = :w",
                    {"w": waiter_id},
                )
                if mine:
                    seq, waiting_since = int(mine[0][0]), float(mine[0][1])
                    queued_on = {r[2] for r in mine}
                elif not may_queue:
                    return Attempt(gone=True)
            if (
                not tx.dialect.for_update
                and seq == NOT_QUEUED
                and mode == "concurrency"
                and len(names) == 1
                and holder_kind == "code"
            ):
                fast = self._fast_grant(
                    tx, names[0], occupy, priority, holder_kind, holder_id, process,
                    lease_seconds, now,
                )  # fmt: skip
                if fast is not None:
                    return Attempt(grant=fast)
            states, ahead = self._read_for_acquire(tx, names, priority, seq, now)
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
                freed, _ = self._reap(
                    tx, decision.limited, now, check_processes=True, keep_waiter=waiter_id
                )
                if freed:
                    states, ahead = self._read_for_acquire(tx, names, priority, seq, now)
                    decision = decide(names, occupy, mode, states, ahead)
            if decision.grant:
                grant = self._grant(
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
                return Attempt(grant=grant, wake=tuple(self._handoff(tx, recheck, now)))
            wake = self._handoff(tx, freed, now)
            if seq == NOT_QUEUED:
                if not may_queue:
                    return Attempt(
                        wait=SlotWait(waiter_id, decision.reasons, decision.retry_after),
                        wake=tuple(wake),
                    )
                self._enqueue(
                    tx,
                    waiter_id,
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
                    "UPDATE waiters SET expires = :e, wake_address = COALESCE(:addr, wake_address)"
                    " WHERE waiter_id = :w",
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

    def _read_for_acquire(
        self, tx: Tx, names: Sequence[str], priority: int, seq: int, now: float
    ) -> tuple[dict[str, LimitState], dict[str, tuple[int, int]]]:
        # The limits (already locked) with the live requests queued ahead of this one.
        ahead_of = (
            "FROM waiters w WHERE w.limit_name = limits.name AND w.expires > :now"
            " AND (w.priority > :p OR (w.priority = :p AND w.seq < :seq))"
        )
        params = _bind("n", names, {"now": now, "p": priority, "seq": seq})
        rows = tx.execute(
            f"SELECT {_LIMIT_COLUMNS}, (SELECT COUNT(*) {ahead_of}),"
            f" (SELECT COALESCE(SUM(w.slots), 0) {ahead_of})"
            f" FROM limits WHERE name IN ({_marks('n', len(names))})",
            params,
        )
        states: dict[str, LimitState] = {}
        ahead: dict[str, tuple[int, int]] = {}
        for row in rows:
            states[row[0]] = _state(row, now)
            if row[9]:
                ahead[row[0]] = (int(row[9]), int(row[10]))
        return states, ahead

    def _grant(
        self,
        tx: Tx,
        decision: Decision,
        states: dict[str, LimitState],
        occupy: int,
        mode: Mode,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        lease_seconds: float,
        now: float,
        queued_as: str | None,
        waited: float,
    ) -> SlotGrant:
        limited = decision.limited
        if queued_as is not None:
            # Its rows are on these limits, already locked by the caller.
            self._dequeue(tx, queued_as, within=sorted(states))
        if not limited:
            return SlotGrant(
                None, (), occupy, mode, decision.unknown, decision.inactive, None, None, waited
            )
        _each(
            tx,
            "UPDATE limits SET active_slots = :v, decayed_at = :now, grants = grants + 1,"
            " total_wait_seconds = total_wait_seconds + :waited WHERE name = :name",
            [
                {"v": states[n].active_slots + occupy, "now": now, "waited": waited, "name": n}
                for n in limited
            ],
        )
        if waited > 0:
            self._observe(tx, SLOT_WAIT, limited, waited)
        if mode == "rate":
            # Tokens are never given back: they drain at the limit's decay rate.
            self._slot_events(tx, now, "slot.granted", limited, occupy, holder_kind, holder_id,
                              process, None, waited)  # fmt: skip
            return SlotGrant(
                None, limited, occupy, mode, decision.unknown, decision.inactive, None, None, waited
            )
        lease_id, expires = self._insert_lease(
            tx, limited, occupy, holder_kind, holder_id, process, lease_seconds, now, waited
        )
        return SlotGrant(
            lease_id,
            limited,
            occupy,
            mode,
            decision.unknown,
            decision.inactive,
            expires,
            lease_seconds,
            waited,
        )

    def _insert_lease(
        self,
        tx: Tx,
        limited: Sequence[str],
        occupy: int,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        lease_seconds: float,
        now: float,
        waited: float,
    ) -> tuple[str, float]:
        lease_id = os.urandom(16).hex()
        expires = now + lease_seconds
        _each(
            tx,
            f"INSERT INTO leases ({_LEASE_COLUMNS}) VALUES ({_LEASE_VALUES})",
            [
                _lease_params(lease_id, n, occupy, holder_kind, holder_id, process, now, expires)
                for n in limited
            ],
        )
        self._slot_events(tx, now, "slot.granted", limited, occupy, holder_kind, holder_id,
                          process, lease_id, waited)  # fmt: skip
        return lease_id, expires

    def _fast_grant(
        self,
        tx: Tx,
        name: str,
        occupy: int,
        priority: int,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        lease_seconds: float,
        now: float,
    ) -> SlotGrant | None:
        """The uncontended case in one statement: room on a plain active limit, nobody ahead.

        Only where the write transaction is the only writer (SQLite): there the
        conditions are read and the count written with nothing in between. None
        when it does not apply; the full decision then runs in the same transaction.
        """
        taken = tx.one(
            "UPDATE limits SET active_slots = active_slots + :n, grants = grants + 1,"
            " decayed_at = :now WHERE name = :name AND active AND slot_decay_per_second = 0"
            " AND active_slots + :n <= slot_limit AND NOT EXISTS (SELECT 1 FROM waiters w"
            " WHERE w.limit_name = :name AND w.expires > :now AND w.priority >= :p)"
            " RETURNING name",
            {"n": float(occupy), "now": now, "name": name, "p": priority},
        )
        if taken is None:
            return None
        lease_id, expires = self._insert_lease(
            tx, (name,), occupy, holder_kind, holder_id, process, lease_seconds, now, 0.0
        )
        return SlotGrant(lease_id, (name,), occupy, "concurrency", (), (), expires, lease_seconds)

    def _fast_grant_alone(
        self,
        name: str,
        occupy: int,
        holder_kind: str,
        holder_id: str | None,
        process: ProcessInfo,
        lease_seconds: float,
        now: float,
        waiter_id: str,
    ) -> SlotGrant | None:
        """The uncontended case on PostgreSQL: one statement takes the slots and the lease.

        The statement is its own transaction. The UPDATE's conditions are on the
        limit's own row (``queued`` counts its waiters), which PostgreSQL
        re-checks on the newest version once it holds the row lock: two
        concurrent requests can never both fit, and a request queued a moment
        ago is never passed. None when it does not apply (nothing was written):
        the full decision runs next. If the connection fails under it, the
        lease's own id tells whether it was granted. A request that was handed
        the slots already (``waiter_id``) is never granted here (see
        ``_FAST_GRANT_SQL``): it takes its grant in the full path.
        """
        lease_id = os.urandom(16).hex()
        expires = now + lease_seconds
        params = {
            "n": float(occupy),
            "w": waiter_id,
            **_lease_params(lease_id, name, occupy, holder_kind, holder_id, process, now, expires),
        }
        try:
            taken = self.db.execute_alone(_FAST_GRANT_SQL, params)
        except OutcomeUnknown:
            taken = self._look(
                "SELECT limit_name FROM leases WHERE lease_id = :id", {"id": lease_id}
            )
        if not taken:
            return None
        self._slot_events(None, now, "slot.granted", (name,), occupy, holder_kind, holder_id,
                          process, lease_id, 0.0)  # fmt: skip
        return SlotGrant(lease_id, (name,), occupy, "concurrency", (), (), expires, lease_seconds)

    def _enqueue(
        self,
        tx: Tx,
        waiter_id: str,
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
        # The row carries all a lease needs, so a release can grant it directly.
        if seq is None:
            seq = self._next_seq(tx, "waiters")
        expires = self.clock.now() + self.settings.waiter_ttl_seconds
        tx.executemany(
            "INSERT INTO waiters (seq, limit_name, waiter_id, slots, priority, holder_kind,"
            " holder_id, pid, host, proc_start, wake_address, created, expires, node, mode,"
            " lease_seconds) VALUES (:seq, :name, :w, :slots, :p, :kind, :holder, :pid, :host,"
            " :start, :addr, :now, :expires, :node, :mode, :seconds)",
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
                }
                for n in limited
            ],
        )
        tx.executemany(
            "UPDATE limits SET denials = denials + 1, queued = queued + 1 WHERE name = :name",
            [{"name": n} for n in limited],
        )
        self._slot_events(tx, now, "slot.denied", limited, occupy, holder_kind, holder_id,
                          process, None, None, f" priority={priority}")  # fmt: skip

    def _dequeue(self, tx: Tx, waiter_id: str, within: Sequence[str] | None = None) -> list[str]:
        """Take a request's waiter rows out (on ``within`` only, already locked, if given).

        Keeps ``limits.queued`` in step; returns the limits it was queued on.
        Without ``within``, the limits' row locks are taken first, in name order,
        as everywhere else.
        """
        if within is None:
            names = sorted(
                {
                    r[0]
                    for r in tx.execute(
                        "SELECT limit_name FROM waiters WHERE waiter_id = :w", {"w": waiter_id}
                    )
                }
            )
            self._lock(tx, names)
            rows = tx.execute(
                "DELETE FROM waiters WHERE waiter_id = :w RETURNING limit_name", {"w": waiter_id}
            )
        else:
            if not within:
                return []
            rows = tx.execute(
                "DELETE FROM waiters WHERE waiter_id = :w AND limit_name IN"
                f" ({_marks('n', len(within))}) RETURNING limit_name",
                _bind("n", within, {"w": waiter_id}),
            )
        gone = sorted({r[0] for r in rows})
        tx.executemany(
            "UPDATE limits SET queued = CASE WHEN queued > 0 THEN queued - 1 ELSE 0 END"
            " WHERE name = :name",
            [{"name": n} for n in gone],
        )
        return gone

    def _next_seq(self, tx: Tx, name: str) -> int:
        row = tx.one(
            "UPDATE sequences SET value = value + 1 WHERE name = :name RETURNING value",
            {"name": name},
        )
        if row is None:
            tx.execute(
                "INSERT INTO sequences (name, value) VALUES (:name, 0)"
                " ON CONFLICT (name) DO NOTHING",
                {"name": name},
            )
            row = tx.one(
                "UPDATE sequences SET value = value + 1 WHERE name = :name RETURNING value",
                {"name": name},
            )
        assert row is not None
        return int(row[0])

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
                    "UPDATE waiters SET expires = :e WHERE waiter_id IN (SELECT waiter_id"
                    f" FROM waiters WHERE waiter_id IN ({_marks('w', len(chunk))})"
                    f" AND expires > :now ORDER BY waiter_id{skip})",
                    _bind("w", chunk, {"e": expires, "now": now}),
                )

    def cancel_slot_wait(self, waiter_id: str) -> list[WakeTarget]:
        """Remove a waiting request from every queue, giving back a grant it never took.

        The room it leaves (its place, or the slots handed to it) is handed on
        to whoever is next; those granted are returned to be notified.
        """
        now = self.clock.now()
        with self.db.write() as tx:
            return self._leave(tx, waiter_id, now)

    def _leave(self, tx: Tx, waiter_id: str, now: float) -> list[WakeTarget]:
        """Take a request out of every queue, giving back a grant it never took.

        Its queues, then any grant: a release committing in between has moved it
        from the first to the second, and both are locked here. The room it
        leaves is handed on; those granted are returned to be notified.
        """
        if not waiter_id:
            return []
        queued = {
            r[0]
            for r in tx.execute(
                "SELECT limit_name FROM waiters WHERE waiter_id = :w", {"w": waiter_id}
            )
        }
        handed = tx.one("SELECT names FROM handoffs WHERE waiter_id = :w", {"w": waiter_id})
        if not queued and handed is None:
            return []
        held = {str(n) for n in json.loads(handed[0])} if handed is not None else set()
        names = sorted(queued | held)
        self._lock(tx, names)
        left = self._dequeue(tx, waiter_id, within=names) if names else []
        back = self._give_back(tx, waiter_id, now)
        return self._handoff(tx, sorted({*left, *back}), now)

    def _task_run_ended(self, tx: Tx, task_run_id: str) -> str | None:
        """Why a task run may no longer be granted slots: ``RunWaitStore`` (run_waits.py)
        answers; a slot store alone knows no runs."""
        return None

    def release_slots(self, lease_id: str) -> tuple[bool, list[WakeTarget]]:
        """Give a lease's slots back. True when the lease was still whole (not reaped)."""
        now = self.clock.now()
        if self.db.dialect.for_update:
            released = self._release_alone(lease_id, now)
            if released is not None:
                return released
        with self.db.write() as tx:
            if tx.dialect.for_update:
                # Row locks: take the limits' locks first, in name order, as acquire does.
                names = [
                    r[0]
                    for r in tx.execute(
                        "SELECT limit_name FROM leases WHERE lease_id = :id", {"id": lease_id}
                    )
                ]
                self._lock(tx, sorted(names))
            rows, crowded = self._release_in(tx, lease_id, now)
            if not rows:
                return False, []
            intact = all(r[3] != _DOOMED for r in rows)
            # Direct handoff: the freed slots go to the head of the queue now, in
            # this transaction, so they are never idle between two transactions.
            wake = self._handoff(tx, crowded, now) if crowded else []
        return intact, wake

    def _release_in(self, tx: Tx, lease_id: str, now: float) -> tuple[list[Row], list[str]]:
        """Delete a lease in ``tx`` (its limits locked); its rows, and the limits with waiters."""
        rows = tx.execute(
            "DELETE FROM leases WHERE lease_id = :id RETURNING limit_name, slots, created,"
            " expires, holder_kind, holder_id",
            {"id": lease_id},
        )
        if not rows:
            return [], []
        crowded: list[str] = []
        self._released_events(now, lease_id, rows)
        for name, slots, created, *_ in rows:
            after = tx.one(
                "UPDATE limits SET active_slots = CASE WHEN active_slots > :n"
                " THEN active_slots - :n ELSE 0 END, releases = releases + 1,"
                " total_hold_seconds = total_hold_seconds + :held WHERE name = :name"
                " RETURNING (SELECT COUNT(*) FROM waiters w WHERE w.limit_name = :name)",
                {"n": float(slots), "held": (now - created) * slots, "name": name},
            )
            if after is not None and after[0]:
                crowded.append(name)
        return rows, sorted(crowded)

    def _look(self, query: str, params: dict[str, Any]) -> list[Row]:
        """Read whether a statement whose outcome is unknown committed.

        If even that cannot be read, the outcome stays unknown: never
        StoreUnavailable ("nothing was written"), which would invite sending
        the call again.
        """
        try:
            return self.db.execute_alone(query, params)
        except StoreUnavailable as exc:
            raise OutcomeUnknown(f"cannot tell whether the store carried it out: {exc}") from exc

    def _release_alone(self, lease_id: str, now: float) -> tuple[bool, list[WakeTarget]] | None:
        """A release on PostgreSQL as one statement, its own transaction, when nobody waits.

        ``locked`` takes the lease's limits' locks, in name order, before the
        lease row is deleted (the DELETE's condition needs it), and reads their
        ``queued`` from the newest row versions: the lease is deleted only when
        nobody waits on any of them. None when nothing was deleted (someone
        waits, so the slots are to be handed off in the same transaction; or
        the lease is unknown) or the connection failed under it with the lease
        still there: the caller releases it the long way.
        """
        try:
            rows = self.db.execute_alone(_RELEASE_SQL, {"id": lease_id, "now": now})
        except OutcomeUnknown:
            left = self._look("SELECT 1 FROM leases WHERE lease_id = :id", {"id": lease_id})
            if left:
                return None
            # It was released (the waiters re-check by themselves within their refresh).
            return True, []
        if not rows:
            return None
        self._released_events(now, lease_id, rows)
        intact = all(r[3] != _DOOMED for r in rows)
        # Nobody waited under the locks; kept as a safety net should that change.
        crowded = sorted(r[0] for r in rows if r[6])
        if not crowded:
            return intact, []
        try:
            with self.db.write() as tx:
                self._lock(tx, crowded)
                return intact, self._handoff(tx, crowded, now)
        except StoreError as exc:
            # The release itself is done: it must not be reported as failed (a
            # caller sending it again would find the lease gone, and take that
            # for a lost lease). Its waiters re-check by themselves within their
            # refresh period.
            logger.warning("released %s, but could not wake its waiters: %s", lease_id, exc)
            return intact, []

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
                    f"UPDATE leases SET expires = :e WHERE lease_id IN ({_marks('l', len(chunk))})"
                    " AND expires > :doomed RETURNING lease_id",
                    _bind("l", chunk, {"e": now + lease_seconds, "doomed": _DOOMED}),
                )
                alive.update(r[0] for r in rows)
        return [i for i in ids if i not in alive]

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
                self.report_skipped("queue count", "*", exc)
            with self.db.read() as tx:
                rows = tx.execute(
                    "SELECT DISTINCT limit_name FROM leases WHERE expires <= :now"
                    " OR node = :node UNION SELECT DISTINCT limit_name FROM waiters"
                    " WHERE expires <= :now OR node = :node",
                    {"now": now, "node": node},
                )
            names = [r[0] for r in rows]
        names = sorted(set(names))
        if not names:
            self._forget_stale_handoffs(now)
            return 0, []
        # Limits whose sweep failed before are swept on their own, every time:
        # the others keep sweeping in one transaction.
        failing: set[str] = self.__dict__.setdefault("_limits_failing", set())
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
                self.report_skipped("limit", name, exc, limit=name)
                continue
            failing.discard(name)
            reaped += count
            wake.extend(targets)
        return reaped, wake

    def _sweep_limits(self, names: Sequence[str], now: float) -> tuple[int, list[WakeTarget]]:
        with self.db.write() as tx:
            self._lock(tx, names)
            freed, reaped = self._reap(tx, names, now, check_processes=True, force_check=True)
            wake = self._handoff(tx, freed, now)
            self._forget_handoffs(tx, now)
        return reaped, wake

    def _forget_stale_handoffs(self, now: float) -> None:
        # Looked for in a read first: on SQLite a write would take the lock every sweep.
        with self.db.read() as tx:
            if tx.one("SELECT 1 FROM handoffs WHERE expires <= :now LIMIT 1", {"now": now}) is None:
                return
        with self.db.write() as tx:
            self._forget_handoffs(tx, now)

    def _forget_handoffs(self, tx: Tx, now: float) -> None:
        # Grants never taken, past their lease's expiry (the lease itself is reaped
        # as any other): a waiter coming back later finds nothing, as if expired.
        tx.execute("DELETE FROM handoffs WHERE expires <= :now", {"now": now})

    def recount_queued(self) -> list[str]:
        """Set ``limits.queued`` from the waiter rows where they disagree; the limits fixed.

        Every statement that adds or removes waiters keeps the count in step, so
        this finds nothing unless that promise was broken; the sweeper runs it
        as a safety net (a count too low would let a newcomer pass the queue).
        """
        count = "(SELECT COUNT(*) FROM waiters w WHERE w.limit_name = limits.name)"
        find = f"SELECT name FROM limits WHERE queued <> {count}"
        # Looked for in a read first: the sweeper runs this often, and a write
        # transaction on SQLite would take the write lock each time.
        with self.db.read() as tx:
            if not tx.execute(find):
                return []
        with self.db.write() as tx:
            drifted = sorted(r[0] for r in tx.execute(find))
            if not drifted:
                return []
            # Locked first: the count is then taken with nobody queuing meanwhile.
            self._lock(tx, drifted)
            tx.execute(
                f"UPDATE limits SET queued = {count} WHERE name IN ({_marks('n', len(drifted))})",
                _bind("n", drifted, {}),
            )
        logger.warning("re-counted the queue of %d limit(s): %s", len(drifted), drifted)
        return drifted

    # -- reaping -------------------------------------------------------------------
    def _reap(
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
        params = _bind("n", names, {"now": now})
        marks = _marks("n", len(names))
        node = current_process().node if check_processes else None
        probe = False
        if node is not None:
            # /proc is read at most every _LIVENESS_EVERY_SECONDS per limit and store.
            checked = self.__dict__.setdefault("_liveness_checked", {})
            due = [n for n in names if force_check or checked.get(n, 0.0) <= now]
            for n in due:
                checked[n] = now + _LIVENESS_EVERY_SECONDS
            probe = bool(due)
        leases = tx.execute(
            "SELECT lease_id, limit_name, slots, pid, node, proc_start, expires, holder_kind,"
            f" holder_id FROM leases WHERE limit_name IN ({marks})"
            + ("" if probe else " AND expires <= :now"),
            params,
        )
        waiters = tx.execute(
            f"SELECT waiter_id, limit_name, pid, node, proc_start, expires FROM waiters"
            f" WHERE limit_name IN ({marks})" + ("" if probe else " AND expires <= :now"),
            params,
        )
        mine = current_process()
        local_pids = [
            pid
            for pid, row_node in [(r[3], r[4]) for r in leases] + [(r[2], r[3]) for r in waiters]
            if probe and row_node == node and isinstance(pid, int) and pid != mine.pid
        ]
        starts = _start_times(local_pids) if local_pids else {}

        def gone(kind: str, row: Row, expires: Any, pid: Any, row_node: Any, start: Any) -> bool:
            # One row whose values cannot be judged (planted or damaged) is left
            # alone and reported: it must not stop the others from being reaped.
            try:
                if float(expires) <= now:
                    return True
                record = ProcessRecord(int(pid), row_node, int(start))
                return probe and is_dead(record, node, starts)
            except (TypeError, ValueError, OverflowError) as exc:
                self.report_skipped(kind, str(row[0]), exc, limit=row[1])
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
            changed.update(self._dequeue(tx, w, within=names))
        if dead_leases:
            for r in dead_leases:
                lease_id, name, slots = r[0], r[1], int(r[2])
                tx.execute(
                    "DELETE FROM leases WHERE lease_id = :id AND limit_name = :name",
                    {"id": lease_id, "name": name},
                )
                tx.execute(
                    "UPDATE limits SET active_slots = CASE WHEN active_slots > :n"
                    " THEN active_slots - :n ELSE 0 END, expiries = expiries + 1"
                    " WHERE name = :name",
                    {"n": float(slots), "name": name},
                )
                expired = float(r[6]) <= now
                reason = "expired" if expired else "holder process is gone"
                self._event(
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
            tx.executemany(
                "UPDATE leases SET expires = :doomed WHERE lease_id = :id",
                [{"id": r[0], "doomed": _DOOMED} for r in dead_leases],
            )
        return sorted(changed), len({r[0] for r in dead_leases})

    def _drop_leases(self, tx: Tx, name: str) -> int:
        ids = [
            r[0]
            for r in tx.execute(
                "SELECT DISTINCT lease_id FROM leases WHERE limit_name = :name", {"name": name}
            )
        ]
        tx.execute("DELETE FROM leases WHERE limit_name = :name", {"name": name})
        tx.executemany(
            "UPDATE leases SET expires = :doomed WHERE lease_id = :id",
            [{"id": i, "doomed": _DOOMED} for i in ids],
        )
        return len(ids)

    # -- direct handoff ------------------------------------------------------------
    def _handoff(self, tx: Tx, names: Sequence[str], now: float) -> list[WakeTarget]:
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
        states = {s.name: s for s in self._limit_states(tx, names, now)}
        # Only the head of each queue can be granted or stop the walk
        # (``queue_depth``): a release behind a thousand waiters reads a few.
        heads: set[str] = set()
        for name in names:
            depth = queue_depth(states.get(name))
            heads.update(
                r[0]
                for r in tx.execute(
                    "SELECT waiter_id FROM waiters WHERE limit_name = :name AND expires > :now"
                    " ORDER BY priority DESC, seq" + ("" if depth is None else " LIMIT :depth"),
                    {"name": name, "now": now, "depth": depth},
                )
            )
        if not heads:
            return []
        ordered = sorted(heads)
        rows = tx.execute(
            "SELECT waiter_id, limit_name, slots, priority, seq, wake_address, host, pid,"
            " proc_start, node, holder_kind, holder_id, mode, lease_seconds, created"
            f" FROM waiters WHERE expires > :now AND waiter_id IN ({_marks('w', len(ordered))})",
            _bind("w", ordered, {"now": now}),
        )
        others = sorted({r[1] for r in rows} - states.keys())
        states.update((s.name, s) for s in self._limit_states(tx, others, now))
        free = {s.name: s.free for s in states.values() if s.active}
        requests: dict[str, QueuedRequest] = {}
        first: dict[str, Row] = {}
        for row in rows:
            waiter_id, name = row[0], row[1]
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
        woken: list[WakeTarget] = []
        for waiter_id in plan_wakeups(free, requests.values()):
            req, row = requests[waiter_id], first[waiter_id]
            target = WakeTarget(waiter_id, row[5], row[6], int(row[7]))
            wanted = sorted(req.names)
            extra = [n for n in wanted if n not in locked]
            if extra and tx.dialect.for_update:
                # Its other limits are not locked by this transaction. Waiting for
                # their locks here, out of name order, could deadlock with a
                # transaction that holds them and waits for ours; so they are
                # taken only if free this instant (SKIP LOCKED never waits).
                # Otherwise the request is woken to retry by itself, taking every
                # lock in name order: the wake-and-retry path. It stays queued
                # meanwhile, so nobody behind it passes it.
                got = self._try_lock(tx, extra)
                locked.update(got)
                if len(got) < len(extra):
                    woken.append(target)
                    continue
            if row[13] is None:
                woken.append(target)  # queued by an older version: no lease length
                continue
            mode: Mode = "rate" if row[12] == "rate" else "concurrency"
            states, ahead = self._read_for_acquire(tx, wanted, req.priority, req.seq, now)
            try:
                decision = decide(wanted, req.slots, mode, states, ahead)
            except ValidationError:
                # It can never be granted as asked (its limit shrank below it):
                # woken, its own attempt tells its caller why.
                woken.append(target)
                continue
            if not decision.grant:
                continue
            process = ProcessInfo(int(row[7]), row[6], row[9], int(row[8]))
            grant = self._grant(
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
            self._record_handoff(tx, waiter_id, grant, now)
            woken.append(target)
        # PostgreSQL: NOTIFY now, delivered at commit (see store/wakeups_pg.py).
        return notify_in_transaction(tx, woken)

    def _limit_states(self, tx: Tx, names: Sequence[str], now: float) -> list[LimitState]:
        """The limits named (those that exist), as a decision sees them at ``now``."""
        if not names:
            return []
        rows = tx.execute(
            f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE name IN ({_marks('n', len(names))})",
            _bind("n", names, {}),
        )
        return [_state(r, now) for r in rows]

    def _try_lock(self, tx: Tx, names: Sequence[str]) -> set[str]:
        """Lock those of ``names`` nobody else holds, without waiting (PostgreSQL)."""
        rows = tx.execute(
            f"SELECT name FROM limits WHERE name IN ({_marks('n', len(names))})"
            f" ORDER BY name{tx.dialect.skip_locked}",
            _bind("n", sorted(names), {}),
        )
        return {r[0] for r in rows}

    def _record_handoff(self, tx: Tx, waiter_id: str, grant: SlotGrant, now: float) -> None:
        # Forgotten with its lease: a waiter that never comes back has the lease
        # reaped like any other. A rate grant (no lease) is kept a waiter TTL.
        forget = (
            grant.expires if grant.expires is not None else now + self.settings.waiter_ttl_seconds
        )
        tx.execute(
            "INSERT INTO handoffs (waiter_id, lease_id, names, slots, mode, lease_seconds,"
            " lease_expires, waited, created, expires) VALUES (:w, :lease, :names, :slots,"
            " :mode, :seconds, :lease_expires, :waited, :now, :forget)",
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

    def _take_handoff(
        self, tx: Tx, waiter_id: str, names: Sequence[str], now: float
    ) -> Attempt | None:
        """Take the grant a release left for ``waiter_id``; None when there is none.

        Deleting the row is what makes it the waiter's: a cancel racing with
        this deletes the same row, and only one of the two finds it (the
        cancel then gives the slots back). ``gone`` when its lease was reaped
        meanwhile (the waiter came back after the lease expired).
        """
        row = tx.one(
            "DELETE FROM handoffs WHERE waiter_id = :w RETURNING lease_id, names, slots, mode,"
            " lease_seconds, lease_expires, waited",
            {"w": waiter_id},
        )
        if row is None:
            return None
        lease_id: str | None = row[0]
        granted = tuple(str(n) for n in json.loads(row[1]))
        expires = None if row[5] is None else float(row[5])
        if lease_id is not None:
            held = tx.one("SELECT MIN(expires) FROM leases WHERE lease_id = :id", {"id": lease_id})
            if held is None or held[0] is None or float(held[0]) <= _DOOMED:
                return Attempt(gone=True)
            expires = float(held[0])
        unknown, inactive = self._unlimited(tx, [n for n in names if n not in granted])
        mode: Mode = "rate" if row[3] == "rate" else "concurrency"
        seconds = None if row[4] is None else float(row[4])
        return Attempt(
            grant=SlotGrant(
                lease_id, granted, int(row[2]), mode, unknown, inactive, expires, seconds,
                float(row[6]),
            )
        )  # fmt: skip

    def _unlimited(self, tx: Tx, names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        # Names of a handed-off request that took nothing: unknown, and inactive.
        if not names:
            return (), ()
        rows = tx.execute(
            f"SELECT name, active FROM limits WHERE name IN ({_marks('n', len(names))})",
            _bind("n", names, {}),
        )
        known = {r[0]: bool(r[1]) for r in rows}
        unknown = tuple(n for n in names if n not in known)
        inactive = tuple(n for n in names if n in known and not known[n])
        return unknown, inactive

    def claim_handoff(self, waiter_id: str, names: Sequence[str]) -> Attempt | None:
        """A waiting request's cheap look: has someone handed it the slots?

        The grant (``Attempt.grant``), ``Attempt.gone`` when its lease was
        reaped meanwhile, or None when nothing was handed to it. A read first,
        so that a waiter that finds nothing writes nothing (and takes no
        SQLite write lock).
        """
        if not waiter_id:
            return None
        query, params = "SELECT 1 FROM handoffs WHERE waiter_id = :w", {"w": waiter_id}
        if self.db.dialect.for_update:
            found = self.db.execute_alone(query, params)
        else:
            with self.db.read() as tx:
                found = tx.execute(query, params)
        if not found:
            return None
        now = self.clock.now()
        with self.db.write() as tx:
            return self._take_handoff(tx, waiter_id, names, now)

    def _give_back(self, tx: Tx, waiter_id: str, now: float) -> list[str]:
        """Return the grant handed to ``waiter_id`` that it never took (its limits locked).

        Returns the limits whose slots came back.
        """
        row = tx.one(
            "DELETE FROM handoffs WHERE waiter_id = :w RETURNING lease_id, names, slots",
            {"w": waiter_id},
        )
        if row is None:
            return []
        if row[0] is not None:
            rows, _ = self._release_in(tx, str(row[0]), now)
            return sorted({r[0] for r in rows})
        # Rate tokens the waiter never used: given back, as if never taken.
        names = sorted(str(n) for n in json.loads(row[1]))
        for name in names:
            current = tx.one(
                f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE name = :name", {"name": name}
            )
            if current is None:
                continue
            state = _state(current, now)
            tx.execute(
                "UPDATE limits SET active_slots = :v, decayed_at = :now WHERE name = :name",
                {"v": released(state.active_slots, int(row[2])), "now": now, "name": name},
            )
        return names

    def _unqueue_deleted(self, tx: Tx, name: str, now: float) -> list[WakeTarget]:
        """Take the waiters of a limit being deleted out of its queue (it is locked).

        A request that waited on that limit alone now asks for a name that is
        not limited: it is handed an empty grant (nothing held, the name
        reported unknown), as its own attempt would find. One also queued on
        other limits is woken to retry there: those limits are not locked here.
        """
        rows = tx.execute(
            "DELETE FROM waiters WHERE limit_name = :name RETURNING waiter_id, slots, mode,"
            " created, wake_address, host, pid, expires",
            {"name": name},
        )
        live = [r for r in rows if float(r[7]) > now]
        if not live:
            return []
        elsewhere = {
            r[0]
            for r in tx.execute(
                f"SELECT DISTINCT waiter_id FROM waiters WHERE waiter_id IN"
                f" ({_marks('w', len(live))})",
                _bind("w", [r[0] for r in live], {}),
            )
        }
        for r in live:
            if r[0] not in elsewhere:
                mode: Mode = "rate" if r[2] == "rate" else "concurrency"
                waited = max(0.0, now - float(r[3]))
                nothing = SlotGrant(None, (), int(r[1]), mode, waited_seconds=waited)
                self._record_handoff(tx, r[0], nothing, now)
        targets = [WakeTarget(r[0], r[4], r[5], int(r[6])) for r in live]
        return notify_in_transaction(tx, targets)

    # -- helpers -------------------------------------------------------------------
    def _lock(self, tx: Tx, names: Sequence[str]) -> None:
        if tx.dialect.for_update and names:
            tx.execute(
                f"SELECT name FROM limits WHERE name IN ({_marks('n', len(names))})"
                f" ORDER BY name{tx.dialect.for_update}",
                _bind("n", sorted(names), {}),
            )

    def _lock_one(self, tx: Tx, name: str) -> Row:
        row = tx.one(
            f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE name = :name{tx.dialect.for_update}",
            {"name": name},
        )
        if row is None:
            raise ObjectNotFound(f"no limit named {name!r}")
        return row

    def _limit_row(self, tx: Tx, name: str) -> Row:
        row = tx.one(f"SELECT {_LIMIT_COLUMNS} FROM limits WHERE name = :name", {"name": name})
        if row is None:
            raise ObjectNotFound(f"no limit named {name!r}")
        return row
