"""The slot engine's one-statement paths: an uncontended grant or release in one statement.

On SQLite the write transaction is the only writer, so the uncontended grant
is one conditional UPDATE inside it (:func:`fast_grant`). On PostgreSQL an
uncontended grant and a release are each one statement, its own transaction
(``Database.execute_alone``): BEGIN and COMMIT would cost more than the
statement. Each returns None when it does not apply (nothing was written),
and the caller then runs the full decision.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from headway.core.limits import ProcessInfo, SlotGrant, WakeTarget
from headway.exceptions import OutcomeUnknown, StoreError, StoreUnavailable
from headway.store.db import Database, Row, Tx
from headway.store.slots.rows import (
    DOOMED,
    LEASE_COLUMNS,
    LEASE_VALUES,
    insert_lease,
    lease_params,
    lock,
)

if TYPE_CHECKING:
    from headway.store.events import Events
    from headway.store.slots.handoff import Handoff

logger = logging.getLogger("headway.store")


#: PostgreSQL's uncontended grant, one statement (see fast_grant_alone).
#: Never for a request that was handed the slots already: a handoff committed
#: before the statement's snapshot is in ``handoffs``; one still in progress
#: then had this request queued on the limit (``queued`` >= 1 in the snapshot's
#: row version, which PostgreSQL checks before it waits for the row lock).
FAST_GRANT_SQL = (
    "WITH taken AS (UPDATE limits SET active_slots = active_slots + :n,"
    " grants = grants + 1, decayed_at = :now WHERE name = :name AND active"
    " AND slot_decay_per_second = 0 AND queued = 0 AND active_slots + :n <= slot_limit"
    " AND NOT EXISTS (SELECT 1 FROM handoffs WHERE waiter_id = :w)"
    f" RETURNING name) INSERT INTO leases ({LEASE_COLUMNS})"
    f" SELECT {LEASE_VALUES.replace(':name', 'name')} FROM taken RETURNING limit_name"
)
#: PostgreSQL's release when nobody waits, one statement (see release_alone).
RELEASE_SQL = (
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


def fast_grant(
    events: Events,
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
    lease_id, expires = insert_lease(
        events, tx, (name,), occupy, holder_kind, holder_id, process, lease_seconds, now, 0.0
    )
    return SlotGrant(lease_id, (name,), occupy, "concurrency", (), (), expires, lease_seconds)


def fast_grant_alone(
    db: Database,
    events: Events,
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
    ``FAST_GRANT_SQL``): it takes its grant in the full path.
    """
    lease_id = os.urandom(16).hex()
    expires = now + lease_seconds
    params = {
        "n": float(occupy),
        "w": waiter_id,
        **lease_params(lease_id, name, occupy, holder_kind, holder_id, process, now, expires),
    }
    try:
        taken = db.execute_alone(FAST_GRANT_SQL, params)
    except OutcomeUnknown:
        taken = look(db, "SELECT limit_name FROM leases WHERE lease_id = :id", {"id": lease_id})
    if not taken:
        return None
    events.slot_events(None, now, "slot.granted", (name,), occupy, holder_kind, holder_id,
                      process, lease_id, 0.0)  # fmt: skip
    return SlotGrant(lease_id, (name,), occupy, "concurrency", (), (), expires, lease_seconds)


def look(db: Database, query: str, params: dict[str, Any]) -> list[Row]:
    """Read whether a statement whose outcome is unknown committed.

    If even that cannot be read, the outcome stays unknown: never
    StoreUnavailable ("nothing was written"), which would invite sending
    the call again.
    """
    try:
        return db.execute_alone(query, params)
    except StoreUnavailable as exc:
        raise OutcomeUnknown(f"cannot tell whether the store carried it out: {exc}") from exc


def release_alone(
    db: Database, events: Events, handoff: Handoff, lease_id: str, now: float
) -> tuple[bool, list[WakeTarget]] | None:
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
        rows = db.execute_alone(RELEASE_SQL, {"id": lease_id, "now": now})
    except OutcomeUnknown:
        left = look(db, "SELECT 1 FROM leases WHERE lease_id = :id", {"id": lease_id})
        if left:
            return None
        # It was released (the waiters re-check by themselves within their refresh).
        return True, []
    if not rows:
        return None
    events.released_events(now, lease_id, rows)
    intact = all(r[3] != DOOMED for r in rows)
    # Nobody waited under the locks; kept as a safety net should that change.
    crowded = sorted(r[0] for r in rows if r[6])
    if not crowded:
        return intact, []
    try:
        with db.write() as tx:
            lock(tx, crowded)
            return intact, handoff.hand_off(tx, crowded, now)
    except StoreError as exc:
        # The release itself is done: it must not be reported as failed (a
        # caller sending it again would find the lease gone, and take that
        # for a lost lease). Its waiters re-check by themselves within their
        # refresh period.
        logger.warning("released %s, but could not wake its waiters: %s", lease_id, exc)
        return intact, []


__all__ = [
    "FAST_GRANT_SQL",
    "RELEASE_SQL",
    "fast_grant",
    "fast_grant_alone",
    "look",
    "release_alone",
]
