"""Limits: created, read, changed live, reset and deleted; the limits of pools and deployments.

A limit is a row of ``limits``, one table for every scope (global names,
``tag:<tag>``, ``deployment:<flow>/<name>[:<key>]``, ``pool:<pool>``,
``queue:<pool>/<queue>``). A change that makes room (a limit raised, enabled,
reset or deleted) hands the room to the head of its queue in the same
transaction (``store/slots/handoff.py``); the waiters granted are returned to
be notified after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from headway.core.clock import Clock
from headway.core.limits import (
    LimitDetail,
    WakeTarget,
    validate_active_slots,
    validate_decay,
    validate_limit,
    validate_name,
)
from headway.core.models import Holder, Lease, Limit, Waiter
from headway.exceptions import ConflictError, ObjectAlreadyExists, ObjectNotFound
from headway.store.db import Database, Tx
from headway.store.events import Events
from headway.store.queries import limits as ql
from headway.store.queries import slots as qs
from headway.store.slots.handoff import Handoff
from headway.store.slots.reaper import Reaper
from headway.store.slots.rows import (
    DOOMED,
    dt,
    limit_of,
    limit_row,
    lock_one,
    state_of,
)
from headway.store.sql import in_list


def drop_leases(tx: Tx, name: str) -> int:
    """Delete every lease on ``name`` (locked), dooming their rows on other limits; how many."""
    ids = [r[0] for r in tx.execute(ql.SELECT_LEASE_IDS_ON_LIMIT, {"name": name})]
    tx.execute(ql.DELETE_LEASES_ON_LIMIT, {"name": name})
    tx.executemany(qs.DOOM_LEASE, [{"id": i, "doomed": DOOMED} for i in ids])
    return len(ids)


class Limits:
    """Limits of every scope. Each public method is one transaction."""

    def __init__(
        self, db: Database, clock: Clock, events: Events, handoff: Handoff, reaper: Reaper
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.handoff = handoff
        self.reaper = reaper

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
                ql.INSERT_LIMIT,
                {
                    "id": str(uuid.uuid4()),
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
            self.events.event(tx, now, "limit.created", name, limit, f"active={bool(active)}")
            row = limit_row(tx, name)
        return limit_of(row, now)

    def read_limit(self, name: str) -> Limit:
        """One limit with its live waiter count; ObjectNotFound if unknown."""
        now = self.clock.now()
        with self.db.read() as tx:
            rows = self._limits_with_waiters(tx, ql.SELECT_LIMIT_WITH_WAITERS, {"name": name}, now)
        if not rows:
            raise ObjectNotFound(f"no limit named {name!r}")
        return rows[0]

    def list_limits(self, *, prefix: str | None = None) -> list[Limit]:
        """Every limit (or those whose name starts with ``prefix``), by name."""
        now = self.clock.now()
        query, params = ql.SELECT_LIMITS_WITH_WAITERS, {}
        if prefix:
            query = ql.SELECT_LIMITS_WITH_WAITERS_BY_PREFIX
            params = {"plen": len(prefix), "prefix": prefix}
        with self.db.read() as tx:
            return self._limits_with_waiters(tx, query, params, now)

    def _limits_with_waiters(
        self, tx: Tx, query: str, params: dict[str, Any], now: float
    ) -> list[Limit]:
        rows = tx.execute(query, {**params, "now": now})
        return [limit_of(r, now, int(r[11])) for r in rows]

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
            row = lock_one(tx, name)
            state = state_of(row, now)
            # Materialise the decay so far, so a new decay rate applies from now on.
            params: dict[str, Any] = {"name": name, "now": now, "slots": state.active_slots}
            if new_slots is not None:
                params["slots"] = float(new_slots)
            if new_limit is not None:
                params["limit"] = new_limit
            if active is not None:
                params["active"] = bool(active)
            if new_decay is not None:
                params["decay"] = new_decay
            query = ql.update_limit(
                limit=new_limit is not None, active=active is not None, decay=new_decay is not None
            )
            tx.execute(query, params)
            changes = {
                "limit": new_limit,
                "active": active,
                "slot_decay_per_second": new_decay,
                "active_slots": new_slots,
            }
            detail = ", ".join(f"{k}={v}" for k, v in changes.items() if v is not None)
            self.events.event(tx, now, "limit.updated", name, new_limit, detail)
            wake = self.handoff.hand_off(tx, [name], now)
            if new_limit is not None:
                wake += self.handoff.wake_unfit(tx, name, new_limit, now)
            row = limit_row(tx, name)
        return limit_of(row, now), wake

    def delete_limit(self, name: str, *, force: bool = False) -> list[WakeTarget]:
        """Delete a limit; ConflictError while it has live holders, unless ``force``.

        Its waiters are woken and find the name unlimited; a forced delete takes
        the slots of the holders, who learn it as a lost lease.
        """
        now = self.clock.now()
        with self.db.write() as tx:
            lock_one(tx, name)
            self.reaper.reap(tx, [name], now, check_processes=True, force_check=True)
            holders = tx.one(ql.SELECT_HOLDER_COUNT, {"name": name})
            count = int(holders[0]) if holders else 0
            if count and not force:
                raise ConflictError(
                    f"limit {name!r} has {count} holder(s); wait for them to release,"
                    " or delete with force"
                )
            drop_leases(tx, name)
            wake = self.handoff.unqueue_deleted(tx, name, now)
            tx.execute(ql.DELETE_LIMIT, {"name": name})
            self.events.event(
                tx, now, "limit.deleted", name, None, f"force={force} holders={count}"
            )
        return wake

    def reset_limit(self, name: str) -> tuple[Limit, list[WakeTarget]]:
        """Free every slot of a limit: its holders lose their leases; waiters are woken."""
        now = self.clock.now()
        with self.db.write() as tx:
            lock_one(tx, name)
            dropped = drop_leases(tx, name)
            tx.execute(ql.RESET_LIMIT, {"name": name, "now": now})
            self.events.event(tx, now, "limit.reset", name, None, f"leases={dropped}")
            wake = self.handoff.hand_off(tx, [name], now)
            row = limit_row(tx, name)
        return limit_of(row, now), wake

    def inspect_limit(self, name: str) -> LimitDetail:
        """A limit, its holders (oldest first) and its live waiters (in grant order)."""
        now = self.clock.now()
        with self.db.read() as tx:
            limits = self._limits_with_waiters(
                tx, ql.SELECT_LIMIT_WITH_WAITERS, {"name": name}, now
            )
            if not limits:
                raise ObjectNotFound(f"no limit named {name!r}")
            lease_rows = tx.execute(ql.SELECT_LIMIT_HOLDERS, {"name": name})
            waiter_rows = tx.execute(ql.SELECT_LIMIT_WAITERS, {"name": name, "now": now})
        holders = tuple(
            Lease(
                id=r[0],
                slots={name: int(r[1])},
                holder=Holder(kind=r[2], id=r[3], pid=int(r[4]), host=r[5]),
                created=dt(r[6]),
                expires=dt(r[7]),
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
                since=dt(r[7]),
            )
            for i, r in enumerate(waiter_rows)
        )
        return LimitDetail(limits[0], holders, waiters)

    # -- the limits of pools, queues and deployments (inside the caller's transaction) ----

    def limit_values(self, tx: Tx, names: Sequence[str], now: float) -> dict[str, int]:
        """The active limits among ``names``: name -> limit (missing: unlimited)."""
        if not names:
            return {}
        params: dict[str, Any] = {}
        marks = in_list("n", list(names), params)
        rows = tx.execute(ql.select_limit_values(marks), params)
        return {r[0]: int(r[1]) for r in rows if bool(r[2])}

    def put_limit(self, tx: Tx, name: str, value: int | None) -> list[WakeTarget]:
        """Set (create or re-activate) or clear (deactivate) one limit, inside ``tx``."""
        row = tx.one(ql.lock_limit_value(tx.dialect.for_update), {"n": name})
        if value is None:
            if row is None or not bool(row[1]):
                return []
            _, wake = self.update_limit(name, active=False)
            return list(wake)
        if row is None:
            try:
                self.create_limit(name, value)
            except ObjectAlreadyExists:
                pass  # created by a concurrent transaction: update it below
            else:
                return []
        _, wake = self.update_limit(name, limit=value, active=True)
        return list(wake)

    def prefixed_limits(self, tx: Tx, prefix: str) -> list[str]:
        """The names of the limits that start with ``prefix``, inside ``tx``."""
        return [
            r[0]
            for r in tx.execute(
                ql.SELECT_LIMIT_NAMES_BY_PREFIX, {"plen": len(prefix), "prefix": prefix}
            )
        ]

    def drop_limits(self, tx: Tx, names: Sequence[str]) -> list[WakeTarget]:
        """Delete these limits; deactivate those still held (holders give them back later)."""
        wake: list[WakeTarget] = []
        for name in names:
            if tx.one(ql.SELECT_LIMIT_EXISTS, {"n": name}) is None:
                continue
            held = tx.one(ql.SELECT_LIMIT_HELD, {"n": name})
            if held is None:
                wake.extend(self.delete_limit(name))
            else:
                wake.extend(self.put_limit(tx, name, None))
        return wake


__all__ = ["Limits", "drop_leases"]
