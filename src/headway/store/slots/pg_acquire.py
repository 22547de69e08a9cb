"""PostgreSQL's acquire: grant, take a handed grant, or queue, in one statement.

``headway_acquire`` (migration 0011) does in the database what
``Slots.acquire_slots`` does statement by statement on SQLite, in the same
order, and answers in JSON (see ``store/slots/pg.py`` for the functions'
common ground). What it cannot do there it leaves to the Python path before
anything is written: it answers ``fallback`` (a task run whose run has
ended, which is refused there; a request that can never be granted, or an
unknown name with ``strict``, which raise there), and :func:`acquire_in_one`
returns None. Whether a holder's process is alive is judged here
(``Reaper.judge`` reads /proc): the function answers ``probe`` with the rows
of this node's processes (read under the locks, or for a single attempt
denied without them in its snapshot), and is asked again naming the dead.
A request that waits is worded by ``core.limits.decide`` itself, on the
limits the function decided on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from headway._process import current_process
from headway.core.attempts import Attempt
from headway.core.limits import LimitState, Mode, ProcessInfo, SlotGrant, SlotWait, decide
from headway.exceptions import OutcomeUnknown
from headway.settings import Settings
from headway.store.db import Database
from headway.store.queries import slots as qs
from headway.store.slots.pg import constants, handed, handed_on, limits_of, look

if TYPE_CHECKING:
    from headway.store.events import Events
    from headway.store.slots.reaper import Reaper


def acquire_in_one(
    db: Database,
    events: Events,
    settings: Settings,
    reaper: Reaper,
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
    strict: bool,
    now: float,
) -> Attempt | None:
    """``Slots.acquire_slots`` on PostgreSQL, one statement; None: the Python path decides.

    None is returned, with nothing written, where the function leaves the
    request to the statement-by-statement path (see the module docstring).
    """
    lease_id = os.urandom(16).hex()
    params: dict[str, Any] = {
        "names": list(names), "occupy": occupy, "mode": mode, "priority": priority,
        "kind": holder_kind, "holder": holder_id, "pid": process.pid, "host": process.host,
        "node": process.node, "start": process.proc_start, "seconds": lease_seconds,
        "now": now, "w": waiter_id, "new": new_waiter, "may": may_queue, "addr": wake_address,
        "lease": lease_id, "strict": strict, "my_node": current_process().node,
        "probe": reaper.probe_due(names, now), "dead_leases": None, "dead_waiters": None,
        **constants(settings),
    }  # fmt: skip
    answer = _acquire(db, params)
    if answer["status"] == "probe":
        # Rows of this node's processes: asked again with the dead named, whom
        # it reaps (under the locks) as it reaps the expired.
        dead_leases, dead_waiters = reaper.judge(
            answer["limited"], answer["leases"], answer["waiters"], now, waiter_id
        )
        # None where nobody is dead: a single attempt may then be denied unlocked.
        params.update(probe=False, dead_leases=dead_leases or None,
                      dead_waiters=dead_waiters or None)  # fmt: skip
        answer = _acquire(db, params)
    status = answer["status"]
    if status == "fallback":
        return None
    if status in ("gone", "handed"):
        return handed(answer, names)
    wake = tuple(handed_on(events, now, answer.get("handoff") or {}))
    if status == "granted":
        limited, unknown, inactive = limits_of(names, answer["limits"])
        waited = float(answer["waited"])
        lease = answer["lease"]
        if limited:
            events.slot_events(None, now, "slot.granted", limited, occupy, holder_kind,
                               holder_id, process, lease, waited)  # fmt: skip
        if lease is None:
            grant = SlotGrant(
                None, limited, occupy, mode, unknown, inactive, None, None, waited
            )  # fmt: skip
        else:
            grant = SlotGrant(lease, limited, occupy, mode, unknown, inactive,
                              float(answer["expires"]), lease_seconds, waited)  # fmt: skip
        return Attempt(grant=grant, wake=wake)
    # Waits: worded by the rule itself, on the limits the function decided on.
    states: dict[str, LimitState] = {}
    ahead: dict[str, tuple[int, int]] = {}
    for name, limit, active, active_slots, decay, count, slots in answer["states"]:
        states[name] = LimitState(name, int(limit), bool(active), float(active_slots),
                                  float(decay))  # fmt: skip
        if count:
            ahead[name] = (int(count), int(slots))
    decision = decide(names, occupy, mode, states, ahead)
    denied = tuple(answer.get("denied") or ())
    if denied:
        events.slot_events(None, float(answer["denied_at"]), "slot.denied", denied, occupy,
                           holder_kind, holder_id, process, None, None,
                           f" priority={priority}")  # fmt: skip
    return Attempt(wait=SlotWait(waiter_id, decision.reasons, decision.retry_after), wake=wake)


def _acquire(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``headway_acquire``; when the connection fails under it, find out what it did.

    The lease id it was given tells whether it granted (its rows exist). A
    request that was not queued yet and could not have taken a handed grant
    is asked again (as queued, if its rows are there now). Otherwise the
    outcome stays unknown, as a lost COMMIT's does.
    """
    try:
        return _answer(db.execute_alone(qs.CALL_ACQUIRE, params))
    except OutcomeUnknown:
        lease = {"id": params["lease"]}
        held = look(db, qs.SELECT_LEASE_EXPIRIES, lease)
        if held:
            return _granted_before(db, params, held)
        if not params["new"]:
            raise
        if params["may"] and look(db, qs.SELECT_WAITER_EXISTS, {"w": params["w"]}):
            params = {**params, "new": False}
        return _answer(db.execute_alone(qs.CALL_ACQUIRE, params))


def _answer(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = rows[0][0]
    return answer


def _granted_before(
    db: Database, params: dict[str, Any], held: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    """The answer of an acquire that granted before its answer was lost (its lease is there).

    How long it waited went with the answer (0 is reported), and so did any
    grant it handed on (those waiters were notified at its commit).
    """
    known = look(db, qs.SELECT_LIMITS_ACTIVE_ANY, {"names": params["names"]})
    limits = [[str(n), bool(active)] for n, active in known]
    return {
        "status": "granted", "lease": params["lease"], "limits": limits, "waited": 0.0,
        "expires": min(float(r[1]) for r in held),
    }  # fmt: skip


__all__ = ["acquire_in_one"]
