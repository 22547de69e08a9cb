"""The slot engine's one-statement paths: an uncontended grant in one statement.

On SQLite the write transaction is the only writer, so the uncontended grant
is one conditional UPDATE inside it (:func:`fast_grant`). On PostgreSQL an
uncontended grant is one statement, its own transaction
(``Database.execute_alone``): BEGIN and COMMIT would cost more than the
statement (a release is one statement too, ``store/slots/pg.py``). Each
returns None when it does not apply (nothing was written), and the caller
then runs the full decision.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from headway.core.limits import ProcessInfo, SlotGrant
from headway.exceptions import OutcomeUnknown, StoreUnavailable
from headway.store.db import Database, Row, Tx
from headway.store.slots.rows import LEASE_COLUMNS, LEASE_VALUES, insert_lease, lease_params

if TYPE_CHECKING:
    from headway.store.events import Events


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


__all__ = [
    "FAST_GRANT_SQL",
    "fast_grant",
    "fast_grant_alone",
    "look",
]
