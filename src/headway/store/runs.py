"""Store operations on flow runs, task runs, their states and their logs.

Each public method is one short transaction. State changes are checked against
``core.states`` inside the same transaction that writes them, so two writers
never both move a run out of the same state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from headway.core.bounds import (
    INT32_MAX,
    INT64_MAX,
    check_epoch,
    check_finite_json,
    check_pid,
    check_whole,
    epoch_of,
)
from headway.core.clock import Clock
from headway.core.limits import WakeTarget
from headway.core.models import FlowRun, LogRecord, TaskRun, TaskRunRecord, ts_to_dt
from headway.core.states import TERMINAL, State, StateType, check_transition
from headway.exceptions import (
    IllegalTransition,
    ObjectAlreadyExists,
    ObjectNotFound,
)
from headway.store.db import Database, Tx
from headway.store.queries import runs as q
from headway.store.run_rows import (
    check_run_fields,
    flow_run_of,
    new_states,
    state_row,
    state_ts,
    task_run_of,
)
from headway.store.slots.run_waits import RunWaits


class Runs:
    """Flow runs, task runs, their states and their logs. Each public method is one
    transaction; ``set_state_in`` and ``insert_states`` run inside the caller's."""

    def __init__(self, db: Database, clock: Clock, run_waits: RunWaits) -> None:
        self.db = db
        self.clock = clock
        self.run_waits = run_waits

    def create_flow_run(
        self,
        *,
        id: str,
        name: str,
        flow_name: str,
        state: State,
        parameters: dict[str, Any] | None = None,
        deployment: str | None = None,
        parent_task_run_id: str | None = None,
        tags: Sequence[str] = (),
        expected_start_time: float | None = None,
        priority: int = 0,
        work_pool: str | None = None,
        work_queue: str | None = None,
        pid: int | None = None,
        host: str | None = None,
    ) -> FlowRun:
        """Insert a flow run in its first state; ObjectAlreadyExists if the id is taken."""
        check_transition(None, state.type)
        check_run_fields(id, name, flow_name, parent_task_run_id, tags)
        if pid is not None:
            check_pid(pid)
        check_whole(priority, "priority", -INT32_MAX, INT32_MAX)
        if expected_start_time is not None:
            expected_start_time = check_epoch(expected_start_time, "expected start time")
        check_finite_json(parameters or {}, "parameters")
        now = self.clock.now()
        ts = state_ts(state)
        running = state.type is StateType.RUNNING
        with self.db.write() as tx:
            created = tx.rowcount(
                q.INSERT_FLOW_RUN,
                {
                    "id": id,
                    "name": name,
                    "flow_name": flow_name,
                    "deployment": deployment,
                    "parent": parent_task_run_id,
                    "parameters": json.dumps(parameters or {}, default=repr),
                    "tags": json.dumps(list(tags)),
                    "st": state.type.value,
                    "sn": state.name,
                    "sm": state.message,
                    "ts": ts,
                    "created": now,
                    "expected": expected_start_time if expected_start_time is not None else now,
                    "start": ts if running else None,
                    "end": ts if state.is_final else None,
                    "run_count": 1 if running else 0,
                    "priority": priority,
                    "pool": work_pool,
                    "queue": work_queue,
                    "pid": pid,
                    "host": host,
                },
            )
            if not created:
                raise ObjectAlreadyExists(f"a flow run with id {id} already exists")
            self.insert_states(tx, "flow", [(id, state)])
            row = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": id})
        assert row is not None
        return flow_run_of(row)

    def set_flow_run_state(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> FlowRun:
        """Move a flow run to ``state`` if the state machine allows it.

        ``expect``, when given, is the set of states the caller believes the run is
        in; a run found elsewhere raises :class:`IllegalTransition` unchanged.
        """
        with self.db.write() as tx:
            self.set_state_in(tx, run_id, state, expect)
            row = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": run_id})
        assert row is not None
        return flow_run_of(row)

    def set_state_in(
        self, tx: Tx, run_id: str, state: State, expect: frozenset[StateType] | None
    ) -> list[WakeTarget]:
        """Change a flow run's state inside ``tx``; who to wake after the commit.

        A run that ends or is being cancelled withdraws its task runs' slot
        waits in the same transaction (store/slots/run_waits.py): those are woken.
        """
        current = tx.one(q.SELECT_FLOW_RUN_STATE + tx.dialect.for_update, {"id": run_id})
        if current is None:
            raise ObjectNotFound(f"no flow run with id {run_id}")
        from_type = StateType(current[0])
        if expect is not None and from_type not in expect:
            raise IllegalTransition(
                f"flow run {run_id} is {from_type.value}, not one of "
                + ", ".join(sorted(t.value for t in expect))
            )
        check_transition(from_type, state.type)
        ts = state_ts(state)
        entering_running = state.type is StateType.RUNNING
        tx.execute(
            q.UPDATE_FLOW_RUN_STATE,
            {
                "st": state.type.value,
                "sn": state.name,
                "sm": state.message,
                "ts": ts,
                "running": 1 if entering_running and from_type is not StateType.RUNNING else 0,
                "final": 1 if state.is_final else 0,
                "id": run_id,
                "now": self.clock.now(),
            },
        )
        self.insert_states(tx, "flow", [(run_id, state)])
        if state.is_final or state.type is StateType.CANCELLING:
            return self.run_waits.withdraw_task_waits(tx, flow_run_id=run_id)
        return []

    def read_flow_run(self, run_id: str, *, with_task_runs: bool = False) -> FlowRun:
        """One flow run (optionally with its task runs); ObjectNotFound if unknown."""
        with self.db.read() as tx:
            row = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": run_id})
            if row is None:
                raise ObjectNotFound(f"no flow run with id {run_id}")
            task_runs = None
            if with_task_runs:
                rows = tx.execute(q.SELECT_TASK_RUNS_OF_FLOW_RUN, {"id": run_id})
                task_runs = tuple(task_run_of(r) for r in rows)
        return flow_run_of(row, task_runs)

    def list_flow_runs(
        self,
        *,
        limit: int = 20,
        states: Sequence[StateType] | None = None,
        deployment: str | None = None,
        flow_name: str | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs, newest first, filtered by state, deployment or flow."""
        check_whole(limit, "limit", 0, INT64_MAX)
        check_whole(offset, "offset", 0, INT64_MAX)
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if states:
            names = [f":s{i}" for i in range(len(states))]
            where.append(q.flow_runs_in_states(", ".join(names)))
            params.update({f"s{i}": s.value for i, s in enumerate(states)})
        if deployment is not None:
            where.append(q.FLOW_RUNS_OF_DEPLOYMENT)
            params["deployment"] = deployment
        if flow_name is not None:
            where.append(q.FLOW_RUNS_OF_FLOW)
            params["flow_name"] = flow_name
        with self.db.read() as tx:
            rows = tx.execute(q.select_flow_runs(where), params)
        return [flow_run_of(r) for r in rows]

    def count_flow_runs_by_state(self) -> dict[str, int]:
        """How many flow runs are in each state type."""
        with self.db.read() as tx:
            rows = tx.execute(q.COUNT_FLOW_RUNS_BY_STATE)
        return {str(r[0]): int(r[1]) for r in rows}

    def record_task_runs(self, records: Sequence[TaskRunRecord]) -> list[WakeTarget]:
        """Write task runs and the states they went through, in one transaction.

        A record may repeat an id already written (a long task reported when it
        started and again when it ended): its row is updated and only the states
        newer than the stored one are appended. Each new state is checked against
        the state machine from the stored one: a state it forbids (anything after
        a final state) is refused, with every state after it in that record; the
        other records are written. A task run with tags that ends withdraws its
        slot waits. Returns who to wake after the commit.
        """
        if not records:
            return []
        for rec in records:
            # Checked before the transaction: one bad record stores nothing of the batch.
            check_epoch(rec.created, "task run created")
            check_whole(rec.run_count, "task run run_count", 0, INT32_MAX)
            for state in rec.states:
                state_ts(state)
        if len({r.id for r in records}) != len(records):
            # One id twice in a batch (the engine never sends that, any HTTP client
            # may): the last report of it stands, as if sent one after the other.
            records = list({r.id: r for r in records}.values())
        with self.db.write() as tx:
            ids = [r.id for r in records]
            known: dict[str, tuple[float, StateType]] = {}
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start : chunk_start + 500]
                marks = ", ".join(f":i{i}" for i in range(len(chunk)))
                for row in tx.execute(
                    q.select_task_run_states(marks), {f"i{i}": v for i, v in enumerate(chunk)}
                ):
                    known[row[0]] = (row[1], StateType(row[2]))
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            state_rows: list[dict[str, Any]] = []
            ended_with_tags: list[str] = []
            # The task engine records thousands of runs a second through here:
            # each timestamp is computed once and no generator runs per state.
            for rec in records:
                stored = known.get(rec.id)
                accepted = new_states(rec.states, stored)
                if not accepted:
                    continue
                last, last_ts = accepted[-1]
                start = None
                for s, ts in accepted:
                    if s.type is StateType.RUNNING:
                        start = ts
                        break
                final = last.type in TERMINAL
                values: dict[str, Any] = {
                    "id": rec.id,
                    "flow_run_id": rec.flow_run_id,
                    "name": rec.name,
                    "task_key": rec.task_key,
                    "tags": json.dumps(list(rec.tags)) if rec.tags else "[]",
                    "st": last.type.value,
                    "sn": last.name,
                    "sm": last.message,
                    "ts": last_ts,
                    "created": rec.created,
                    "start": start,
                    "end": last_ts if final else None,
                    "run_count": rec.run_count,
                }
                if stored is not None:
                    updates.append(values)
                else:
                    inserts.append(values)
                if final and rec.tags:
                    ended_with_tags.append(rec.id)
                for s, ts in accepted:
                    state_rows.append(state_row(rec.id, "task", s, ts))
            tx.executemany(q.INSERT_TASK_RUN, inserts)
            # A late report of older states never moves a run backwards.
            tx.executemany(q.UPDATE_TASK_RUN, updates)
            self.insert_state_rows(tx, state_rows)
            return self.run_waits.withdraw_task_waits(tx, task_run_ids=ended_with_tags)

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run; ObjectNotFound if unknown."""
        with self.db.read() as tx:
            row = tx.one(q.SELECT_TASK_RUN_BY_ID, {"id": task_run_id})
        if row is None:
            raise ObjectNotFound(f"no task run with id {task_run_id}")
        return task_run_of(row)

    def read_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        """The task runs of a flow run, in creation order."""
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_TASK_RUNS_OF_FLOW_RUN, {"id": flow_run_id})
        return [task_run_of(r) for r in rows]

    def read_states(self, run_id: str) -> list[State]:
        """Every recorded state of a flow or task run, oldest first."""
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_STATES_OF_RUN, {"id": run_id})
        return [
            State(StateType(r[0]), r[1], ts_to_dt(r[3]) or State(StateType.PENDING).timestamp, r[2])
            for r in rows
        ]

    def insert_states(self, tx: Tx, kind: str, items: Sequence[tuple[str, State]]) -> None:
        """Append states of ``kind`` runs (``flow`` or ``task``) to their history, in ``tx``."""
        self.insert_state_rows(tx, [state_row(run_id, kind, s, state_ts(s)) for run_id, s in items])

    def insert_state_rows(self, tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows made by ``state_row`` to ``states``, inside ``tx``."""
        tx.executemany(q.INSERT_STATE, rows)

    def write_logs(self, records: Sequence[LogRecord]) -> None:
        """Append log lines, in one transaction."""
        if not records:
            return
        stamps = []
        for r in records:
            check_whole(r.level, "log level", 0, INT32_MAX)
            stamps.append(epoch_of(r.timestamp, "log timestamp"))
        with self.db.write() as tx:
            tx.executemany(
                q.INSERT_LOG,
                [
                    {
                        "f": r.flow_run_id,
                        "t": r.task_run_id,
                        "level": r.level,
                        "logger": r.logger,
                        "message": r.message,
                        "ts": ts,
                    }
                    for r, ts in zip(records, stamps, strict=True)
                ],
            )

    def read_logs(
        self, flow_run_id: str, *, after_id: int = 0, limit: int = 10_000
    ) -> list[tuple[int, LogRecord]]:
        """Log lines of a flow run (and its task runs) after ``after_id``, with their ids."""
        check_whole(after_id, "after_id", 0, INT64_MAX)
        check_whole(limit, "limit", 0, INT64_MAX)
        with self.db.read() as tx:
            rows = tx.execute(
                q.SELECT_LOGS_AFTER, {"id": flow_run_id, "after": after_id, "limit": limit}
            )
        out = []
        for r in rows:
            ts = ts_to_dt(r[6])
            assert ts is not None
            out.append(
                (
                    int(r[0]),
                    LogRecord(r[1], r[2], r[3], logging.getLevelName(r[3]), r[4], r[5], ts),
                )
            )
        return out


__all__ = ["Runs"]
