"""PostgreSQL's slot functions: an acquire, a release, a waiter's look, one round trip each.

Under contention every slot operation waits for the limit's row lock, and
holds it until it commits. Run from here as a dozen statements, a release
and its handoff, or an acquire that queues, held it for a dozen round trips
with Python in between; as one call of a function written in the database
(migrations 0010 and 0011: ``headway_release``, ``headway_hand_off``,
``headway_acquire``, ``headway_take``) they hold it for the time the
database takes to do the work. The functions follow ``core.limits`` as the
Python path does on SQLite (``store/slots/engine.py``, ``handoff.py``), and
answer in JSON: the released lease's rows, the grants made (their events
are recorded here, buffered as every slot event is), the waiters woken,
whom the function has notified already, inside its transaction, and for a
request that waits the limits it was decided on, so that ``decide`` words
the reasons here as it does everywhere.

What an acquire cannot do in the database it leaves, before writing
anything, to the Python path or to its caller (``pg_acquire.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from headway.core.attempts import Attempt
from headway.core.limits import Mode, ProcessInfo, SlotGrant, WakeTarget
from headway.exceptions import OutcomeUnknown, StoreUnavailable
from headway.settings import Settings
from headway.store.db import Database, Row, Tx
from headway.store.queries import slots as qs
from headway.store.slots.rows import DOOMED
from headway.store.wakeups_pg import PREFIX

if TYPE_CHECKING:
    from headway.store.events import Events


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


def constants(settings: Settings) -> dict[str, Any]:
    """What every slot function is told besides its arguments: the store's settings.

    The constants of ``core`` it follows (the wait histogram's bounds, the
    tolerance of slot counts, the states that refuse a task run) are written
    into the functions by their migrations, which a test holds to ``core``:
    sent with every call, they cost more to send than the call's own work.
    """
    return {"ttl": float(settings.waiter_ttl_seconds)}


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
    row = tx.one(qs.CALL_HAND_OFF, {"names": list(names), "now": now, **constants(settings)})
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
        rows = db.execute_alone(qs.CALL_RELEASE, params)
    except OutcomeUnknown:
        if not look(db, qs.SELECT_LEASE_EXISTS, {"id": lease_id}):
            return True, []
        rows = db.execute_alone(qs.CALL_RELEASE, params)
    answer: dict[str, Any] = rows[0][0]
    released = [tuple(r) for r in answer["released"]]
    if not released:
        return False, []
    events.released_events(now, lease_id, released)
    intact = all(float(r[3]) != DOOMED for r in released)
    return intact, handed_on(events, now, answer)


def limits_of(
    names: Sequence[str], known: Sequence[Sequence[Any]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Of ``names``, those limited, unknown and inactive, given ``[name, active]`` pairs."""
    active = {str(k[0]): bool(k[1]) for k in known}
    return (
        tuple(n for n in names if active.get(n)),
        tuple(n for n in names if n not in active),
        tuple(n for n in names if n in active and not active[n]),
    )


def handed(answer: dict[str, Any], names: Sequence[str]) -> Attempt:
    """The grant a waiter took (``headway_take``'s answer), as ``Handoff.take`` gives it."""
    if answer["status"] == "gone":
        return Attempt(gone=True)
    granted = tuple(str(n) for n in answer["names"])
    _, unknown, inactive = limits_of([n for n in names if n not in granted], answer["limits"])
    mode: Mode = "rate" if answer["mode"] == "rate" else "concurrency"
    expires, seconds = answer["expires"], answer["seconds"]
    return Attempt(
        grant=SlotGrant(
            answer["lease"], granted, int(answer["slots"]), mode, unknown, inactive,
            None if expires is None else float(expires),
            None if seconds is None else float(seconds), float(answer["waited"]),
        )
    )  # fmt: skip


def take_in_one(db: Database, waiter_id: str, names: Sequence[str]) -> Attempt | None:
    """A waiting request's look for a grant handed to it (``Slots.claim_handoff``), one statement.

    It takes no limit's lock. When the connection fails under it the outcome
    is unknown, as a lost COMMIT's is: :class:`OutcomeUnknown` is raised.
    """
    rows = db.execute_alone(qs.CALL_TAKE, {"w": waiter_id, "names": list(names)})
    answer: dict[str, Any] | None = rows[0][0] if rows else None
    return None if answer is None else handed(answer, names)


__all__ = [
    "constants",
    "hand_off_in",
    "handed",
    "handed_on",
    "limits_of",
    "look",
    "release_in_one",
    "take_in_one",
]
