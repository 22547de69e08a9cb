"""PostgreSQL's slot functions: the contended operations in one round trip each.

Under contention every slot operation waits for the limit's row lock, and
holds it until it commits. Run from here as a dozen statements, a release
and its handoff held it for a dozen round trips with Python in between; as
one call of a function written in the database (migration 0009,
``headway_release`` and ``headway_hand_off``) they hold it for the time the
database takes to do the work. The functions follow ``core.limits`` as the
Python handoff does on SQLite (``store/slots/handoff.py``), and answer in
JSON: the released lease's rows, the grants handed on (their events are
recorded here, buffered as every slot event is) and the waiters woken, whom
the function has notified already, inside its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from headway.core.events import HISTOGRAM_BOUNDS, SLOT_WAIT
from headway.core.limits import ProcessInfo, WakeTarget
from headway.exceptions import OutcomeUnknown
from headway.settings import Settings
from headway.store.db import Database, Tx
from headway.store.slots.fast import look
from headway.store.slots.rows import DOOMED
from headway.store.wakeups_pg import PREFIX

if TYPE_CHECKING:
    from headway.store.events import Events

#: The histogram's bounds, as the functions take them (``core.events.bucket_of``).
_BOUNDS = list(HISTOGRAM_BOUNDS)

HAND_OFF_SQL = (
    "SELECT headway_hand_off(:names::text[], :now::float8, :ttl::float8, :metric::text,"
    " :bounds::float8[])"
)
RELEASE_SQL = (
    "SELECT headway_release(:id::text, :now::float8, :ttl::float8, :metric::text,"
    " :bounds::float8[])"
)


def constants(settings: Settings) -> dict[str, Any]:
    """What every slot function is told besides its arguments."""
    return {"ttl": float(settings.waiter_ttl_seconds), "metric": SLOT_WAIT, "bounds": _BOUNDS}


def handed_on(events: Events, now: float, answer: dict[str, Any]) -> list[WakeTarget]:
    """Record the grants a function handed on; the waiters it woke.

    The function notified those that listen on PostgreSQL (``pg:`` addresses)
    inside its transaction: their addresses come back cleared, so that nobody
    sends them again after the commit, while a waiter of this very process is
    still woken directly (``PostgresWakeups.notify``).
    """
    for grant in answer.get("grants") or ():
        events.slot_events(None, now, "slot.granted", tuple(grant["names"]), int(grant["slots"]),
                           grant["kind"], grant["holder"],
                           ProcessInfo(int(grant["pid"]), grant["host"]), grant["lease"],
                           float(grant["waited"]))  # fmt: skip
    woken: list[WakeTarget] = []
    for target in answer.get("woken") or ():
        address = target["addr"]
        if address is not None and address.startswith(PREFIX):
            address = None
        woken.append(WakeTarget(target["w"], address, target["host"], int(target["pid"])))
    return woken


def hand_off_in(
    tx: Tx, events: Events, settings: Settings, names: Sequence[str], now: float
) -> list[WakeTarget]:
    """``Handoff.hand_off`` on PostgreSQL: one call of ``headway_hand_off`` inside ``tx``."""
    row = tx.one(HAND_OFF_SQL, {"names": list(names), "now": now, **constants(settings)})
    assert row is not None
    return handed_on(events, now, row[0])


def release_in_one(
    db: Database, events: Events, settings: Settings, lease_id: str, now: float
) -> tuple[bool, list[WakeTarget]]:
    """A release on PostgreSQL: one statement, its own transaction, handoff included.

    True when the lease was still whole (not reaped). When the connection
    fails under it, the lease's own id tells whether it committed: if the
    lease is still there it is released now; if not, it was, and the waiters
    it handed the slots to were notified at that commit (only the events of
    that release and its grants are lost with the answer).
    """
    params = {"id": lease_id, "now": now, **constants(settings)}
    try:
        rows = db.execute_alone(RELEASE_SQL, params)
    except OutcomeUnknown:
        if not look(db, "SELECT 1 FROM leases WHERE lease_id = :id", {"id": lease_id}):
            return True, []
        rows = db.execute_alone(RELEASE_SQL, params)
    answer: dict[str, Any] = rows[0][0]
    released = [tuple(r) for r in answer["released"]]
    if not released:
        return False, []
    events.released_events(now, lease_id, released)
    intact = all(float(r[3]) != DOOMED for r in released)
    return intact, handed_on(events, now, answer)


__all__ = [
    "HAND_OFF_SQL",
    "RELEASE_SQL",
    "constants",
    "hand_off_in",
    "handed_on",
    "release_in_one",
]
