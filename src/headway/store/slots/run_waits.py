"""Final means final: the slot waits of task runs whose run has ended, or is being cancelled.

A task run waits for its tags' slots as waiter rows held by ``task_run`` and
its own id. When its flow run is cancelled (CANCELLING or CANCELLED) or ends
any other way, or the task run itself ends, those rows are withdrawn in the
same transaction, and the waiting calls are woken so they notice at once. A
request of such a task run that comes back (a long poll re-attempted, a task
on a remote Dask worker that never heard of the cancel) is refused: it is not
queued again and never granted, so a task that had not started never starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from headway.core.clock import Clock
from headway.core.limits import WakeTarget
from headway.core.states import TERMINAL, StateType
from headway.store.db import Database, Tx
from headway.store.events import Events
from headway.store.queries import slots as qs
from headway.store.slots.handoff import Handoff
from headway.store.slots.rows import dequeue, lock
from headway.store.wakeups_pg import notify_in_transaction

#: Flow-run states in which none of its task runs may be granted a slot.
NO_NEW_GRANTS: frozenset[str] = frozenset(
    {t.value for t in TERMINAL} | {StateType.CANCELLING.value}
)
FINAL_STATES: frozenset[str] = frozenset(t.value for t in TERMINAL)


class RunWaits:
    """Withdrawing and refusing the slot requests of ended runs (inside the caller's
    transaction): the runs part calls it when a run ends, the slots part before a grant."""

    def __init__(self, db: Database, clock: Clock, events: Events, handoff: Handoff) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.handoff = handoff

    def task_run_ended(self, tx: Tx, task_run_id: str) -> str | None:
        """Why ``task_run_id`` may no longer be granted slots; None when it may.

        A task run not recorded yet (a process-pool task reports when it ends)
        has nothing to say against it.
        """
        row = tx.one(qs.SELECT_TASK_RUN_STATES, {"id": task_run_id})
        if row is None:
            return None
        task_state, flow_run_id, flow_state = row
        if task_state in FINAL_STATES:
            return f"task run {task_run_id} already ended {task_state}"
        if flow_state in NO_NEW_GRANTS:
            what = "is being cancelled" if flow_state == "CANCELLING" else f"ended {flow_state}"
            return f"the flow run {flow_run_id} of task run {task_run_id} {what}"
        return None

    def withdraw_task_waits(
        self,
        tx: Tx,
        *,
        flow_run_id: str | None = None,
        task_run_ids: Sequence[str] = (),
    ) -> list[WakeTarget]:
        """Take out the waiter rows of a flow run's task runs (or of ``task_run_ids``).

        Returns who to wake: each withdrawn request (its waiting call re-checks
        and is refused) and the waiters it was blocking.
        """
        if flow_run_id is not None:
            where = (qs.TASK_RUNS_OF_FLOW_RUN, {"run": flow_run_id})
        elif task_run_ids:
            marks = ", ".join(f":t{i}" for i in range(len(task_run_ids)))
            where = (qs.task_runs_in(marks), {f"t{i}": v for i, v in enumerate(task_run_ids)})
        else:
            return []
        rows = tx.execute(qs.select_task_run_waiters(where[0]), where[1])
        # Grants already handed to such a request (direct handoff) that it has not
        # taken yet: given back, so a task that never starts holds no slot.
        handed = tx.execute(qs.select_task_run_handoffs(where[0]), where[1])
        if not rows and not handed:
            return []
        now = self.clock.now()
        # Every limit's row lock first, in name order, as every other writer takes them.
        names = sorted({r[1] for r in rows} | {str(n) for h in handed for n in json.loads(h[1])})
        lock(tx, names)
        mine = {r[0]: WakeTarget(r[0], r[2], r[3], int(r[4])) for r in rows}
        for waiter_id in sorted(mine):
            dequeue(tx, waiter_id, within=names)
        for waiter_id, _ in handed:
            self.handoff.give_back(tx, waiter_id, now)
        why = "its flow run ended or is being cancelled" if flow_run_id else "it ended"
        for r in rows:
            self.events.event(tx, now, "slot.withdrawn", r[1], int(r[6]), why, run_id=r[5])
        # PostgreSQL: NOTIFY now, delivered at commit (see store/wakeups_pg.py).
        wake = notify_in_transaction(tx, list(mine.values()))
        wake.extend(self.handoff.hand_off(tx, names, now))
        return wake


__all__ = ["FINAL_STATES", "NO_NEW_GRANTS", "RunWaits"]
