"""The rows of the slot engine, as every slot operation reads and writes them.

Limits, leases and waiters are rows (``store/schema.py``); these are the
steps the parts of the slot engine share (acquire, handoff, release,
reaping, limits), each run inside the caller's transaction: the locks in name
order, the decision's read, a grant (its counters, lease and events), a
request taken out of its queues, a lease deleted. Their statements are named
in ``store/queries/limits.py`` and ``store/queries/slots.py``. Functions, not
a class: each takes the transaction and, where it records events, the store's
:class:`~headway.store.events.Events`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headway.core.events import SLOT_WAIT
from headway.core.limits import Decision, LimitState, Mode, ProcessInfo, SlotGrant, decayed
from headway.core.models import Limit, ts_to_dt
from headway.exceptions import ObjectNotFound
from headway.store.db import Row, Tx
from headway.store.queries import limits as ql
from headway.store.queries import slots as qs

if TYPE_CHECKING:
    from headway.store.events import Events

#: ``expires`` of the remaining rows of a lease that was reaped.
DOOMED = 0.0


def each(tx: Tx, query: str, rows: list[dict[str, Any]]) -> None:
    """Run ``query`` once per parameter set (execute for one, executemany for more)."""
    # executemany costs more than execute for the usual single row.
    if len(rows) == 1:
        tx.execute(query, rows[0])
    else:
        tx.executemany(query, rows)


def lease_params(
    lease_id: str,
    name: str,
    slots: int,
    holder_kind: str,
    holder_id: str | None,
    process: ProcessInfo,
    now: float,
    expires: float,
) -> dict[str, Any]:
    """The parameters of a lease row on ``name`` (as ``queries.slots.LEASE_VALUES`` names them)."""
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


def marks(prefix: str, count: int) -> str:
    """``:<prefix>0, ...`` for ``count`` values (bound by :func:`bind`)."""
    return ", ".join(f":{prefix}{i}" for i in range(count))


def bind(prefix: str, values: Sequence[Any], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``values`` bound as ``<prefix>0, ...``."""
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
    return params


def dt(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(float(ts), UTC)


def limit_of(row: Row, now: float, waiters: int = 0) -> Limit:
    """A :class:`Limit` from a row of ``ql.LIMIT_RECORD_COLUMNS``, decayed to ``now``."""
    return Limit(
        id=row[9],
        updated=ts_to_dt(row[10]),
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


def state_of(row: Row, now: float) -> LimitState:
    """The :class:`LimitState` a decision sees at ``now``, from a row of ``ql.LIMIT_COLUMNS``."""
    return LimitState(
        name=row[0],
        limit=int(row[1]),
        active=bool(row[2]),
        active_slots=decayed(float(row[3]), float(row[4]), float(row[5]), now),
        decay_per_second=float(row[4]),
    )


# -- locks and reads (inside the caller's transaction) ---------------------------------


def lock(tx: Tx, names: Sequence[str]) -> None:
    """Lock the limits named, in name order (PostgreSQL; SQLite's write lock covers them)."""
    if tx.dialect.row_locks and names:
        tx.execute(
            ql.lock_limits(marks("n", len(names)), tx.dialect.for_update),
            bind("n", sorted(names), {}),
        )


def lock_one(tx: Tx, name: str) -> Row:
    """Lock and read one limit's row; ObjectNotFound if unknown."""
    row = tx.one(ql.lock_limit(tx.dialect.for_update), {"name": name})
    if row is None:
        raise ObjectNotFound(f"no limit named {name!r}")
    return row


def limit_row(tx: Tx, name: str) -> Row:
    """One limit's row of ``ql.LIMIT_RECORD_COLUMNS``; ObjectNotFound if unknown."""
    row = tx.one(ql.SELECT_LIMIT_RECORD, {"name": name})
    if row is None:
        raise ObjectNotFound(f"no limit named {name!r}")
    return row


def limit_states(tx: Tx, names: Sequence[str], now: float) -> list[LimitState]:
    """The limits named (those that exist), as a decision sees them at ``now``."""
    if not names:
        return []
    rows = tx.execute(ql.select_limits(marks("n", len(names))), bind("n", names, {}))
    return [state_of(r, now) for r in rows]


def try_lock(tx: Tx, names: Sequence[str]) -> set[str]:
    """Lock those of ``names`` nobody else holds, without waiting (PostgreSQL)."""
    rows = tx.execute(
        ql.try_lock_limits(marks("n", len(names)), tx.dialect.skip_locked),
        bind("n", sorted(names), {}),
    )
    return {r[0] for r in rows}


def unlimited(tx: Tx, names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Of ``names``, those with no limit and those whose limit is inactive."""
    if not names:
        return (), ()
    rows = tx.execute(ql.select_limits_active(marks("n", len(names))), bind("n", names, {}))
    known = {r[0]: bool(r[1]) for r in rows}
    unknown = tuple(n for n in names if n not in known)
    inactive = tuple(n for n in names if n in known and not known[n])
    return unknown, inactive


def read_for_acquire(
    tx: Tx, names: Sequence[str], priority: int, seq: int, now: float
) -> tuple[dict[str, LimitState], dict[str, tuple[int, int]]]:
    """The limits (locked) as a decision sees them, with what waits ahead of (priority, seq)."""
    params = bind("n", names, {"now": now, "p": priority, "seq": seq})
    rows = tx.execute(qs.select_limits_for_acquire(marks("n", len(names))), params)
    states: dict[str, LimitState] = {}
    ahead: dict[str, tuple[int, int]] = {}
    for row in rows:
        states[row[0]] = state_of(row, now)
        if row[9]:
            ahead[row[0]] = (int(row[9]), int(row[10]))
    return states, ahead


# -- writes ------------------------------------------------------------------------


def write_grant(
    events: Events,
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
    """Take the slots a decision granted: counters, lease (or rate tokens), events; the grant."""
    limited = decision.limited
    left: set[str] = set()
    if queued_as is not None:
        # Its rows are on these limits, already locked by the caller. The queue
        # counts of the limits granted are kept in step by the grant's own update.
        left = set(dequeue(tx, queued_as, within=sorted(states), count=False))
        uncounted = sorted(left.difference(limited))
        tx.executemany(qs.DECREMENT_QUEUED, [{"name": n} for n in uncounted])
    if not limited:
        return SlotGrant(
            None, (), occupy, mode, decision.unknown, decision.inactive, None, None, waited
        )
    each(
        tx,
        qs.GRANT_SLOTS,
        [
            {
                "v": states[n].active_slots + occupy,
                "now": now,
                "waited": waited,
                "dq": 1 if n in left else 0,
                "name": n,
            }
            for n in limited
        ],
    )
    if waited > 0:
        events.observe_later(SLOT_WAIT, limited, waited)
    if mode == "rate":
        # Tokens are never given back: they drain at the limit's decay rate.
        events.slot_events(tx, now, "slot.granted", limited, occupy, holder_kind, holder_id,
                          process, None, waited)  # fmt: skip
        return SlotGrant(
            None, limited, occupy, mode, decision.unknown, decision.inactive, None, None, waited
        )
    lease_id, expires = insert_lease(
        events, tx, limited, occupy, holder_kind, holder_id, process, lease_seconds, now, waited
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


def insert_lease(
    events: Events,
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
    """Insert a lease's rows on ``limited`` and record the grant; its id and expiry."""
    lease_id = os.urandom(16).hex()
    expires = now + lease_seconds
    each(
        tx,
        qs.INSERT_LEASE,
        [
            lease_params(lease_id, n, occupy, holder_kind, holder_id, process, now, expires)
            for n in limited
        ],
    )
    events.slot_events(tx, now, "slot.granted", limited, occupy, holder_kind, holder_id,
                      process, lease_id, waited)  # fmt: skip
    return lease_id, expires


def dequeue(
    tx: Tx, waiter_id: str, within: Sequence[str] | None = None, *, count: bool = True
) -> list[str]:
    """Take a request's waiter rows out (on ``within`` only, already locked, if given).

    Keeps ``limits.queued`` in step (unless not ``count``: the caller does it
    in its own update of those limits); returns the limits it was queued on.
    Without ``within``, the limits' row locks are taken first, in name order,
    as everywhere else.
    """
    if within is None:
        names = sorted({r[0] for r in tx.execute(qs.SELECT_WAITER_LIMITS, {"w": waiter_id})})
        lock(tx, names)
        rows = tx.execute(qs.DELETE_WAITER, {"w": waiter_id})
    else:
        if not within:
            return []
        rows = tx.execute(
            qs.delete_waiter_on(marks("n", len(within))), bind("n", within, {"w": waiter_id})
        )
    gone = sorted({r[0] for r in rows})
    if count:
        tx.executemany(qs.DECREMENT_QUEUED, [{"name": n} for n in gone])
    return gone


def release_in(events: Events, tx: Tx, lease_id: str, now: float) -> tuple[list[Row], list[str]]:
    """Delete a lease in ``tx`` (its limits locked); its rows, and the limits with waiters."""
    rows = tx.execute(qs.DELETE_LEASE, {"id": lease_id})
    if not rows:
        return [], []
    crowded: list[str] = []
    events.released_events(now, lease_id, rows)
    for name, slots, created, *_ in rows:
        after = tx.one(
            qs.RELEASE_SLOTS, {"n": float(slots), "held": (now - created) * slots, "name": name}
        )
        if after is not None and after[0]:
            crowded.append(name)
    return rows, sorted(crowded)


__all__ = [
    "DOOMED",
    "bind",
    "dequeue",
    "dt",
    "each",
    "insert_lease",
    "lease_params",
    "limit_of",
    "limit_row",
    "limit_states",
    "lock",
    "lock_one",
    "marks",
    "read_for_acquire",
    "release_in",
    "state_of",
    "try_lock",
    "unlimited",
    "write_grant",
]
