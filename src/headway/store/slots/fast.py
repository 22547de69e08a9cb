"""SQLite's one-statement grant: an uncontended request in one conditional UPDATE.

On SQLite the write transaction is the only writer, so the uncontended grant
is one conditional UPDATE inside it (:func:`fast_grant`); None when it does
not apply (nothing was written), and the caller then runs the full decision
in the same transaction. On PostgreSQL every acquire is one statement
already (``store/slots/pg.py``), the uncontended grant its first step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headway.core.limits import ProcessInfo, SlotGrant
from headway.store.db import Tx
from headway.store.queries import slots as qs
from headway.store.slots.rows import insert_lease

if TYPE_CHECKING:
    from headway.store.events import Events


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
    taken = tx.one(qs.FAST_GRANT, {"n": float(occupy), "now": now, "name": name, "p": priority})
    if taken is None:
        return None
    lease_id, expires = insert_lease(
        events, tx, (name,), occupy, holder_kind, holder_id, process, lease_seconds, now, 0.0
    )
    return SlotGrant(lease_id, (name,), occupy, "concurrency", (), (), expires, lease_seconds)


__all__ = ["fast_grant"]
