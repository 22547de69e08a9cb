"""Store operations that create deployment runs: on demand, and ahead from schedules.

Each run a scheduler creates carries its schedule time in ``scheduled_slot``,
unique per deployment: any number of schedulers, restarted any number of
times, insert each run once (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from headway.core.bounds import EPOCH_MAX
from headway.core.clock import Clock
from headway.core.deployments import render_key
from headway.core.limits import WakeTarget
from headway.core.models import FlowRun
from headway.core.schedules import next_times, schedule_from_dict
from headway.core.states import LATE, Scheduled, StateType
from headway.exceptions import HeadwayError
from headway.store.db import Database, Tx
from headway.store.events import Events
from headway.store.queries import deployments as q
from headway.store.run_leases import RunLeases
from headway.store.run_rows import flow_run_of
from headway.store.runs import Runs

_SCHEDULED = frozenset({StateType.SCHEDULED})
#: The event recorded when the scheduler skips a deployment whose runs it cannot make.
SCHEDULE_FAILED = "deployment.schedule_failed"
logger = logging.getLogger("headway.scheduler")


class Scheduling:
    """Creating deployment runs: on demand, and ahead from their schedules."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        runs: Runs,
        run_leases: RunLeases,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs
        self.run_leases = run_leases

    def create_deployment_run(
        self,
        *,
        full_name: str,
        flow_name: str,
        name: str,
        parameters: Mapping[str, Any],
        tags: Sequence[str],
        work_pool: str | None,
        work_queue: str | None,
        expected_start_time: float,
        priority: int,
        concurrency_key: str | None,
        scheduled_slot: float | None = None,
        run_id: str | None = None,
    ) -> tuple[FlowRun | None, list[WakeTarget]]:
        """Insert a SCHEDULED run of a deployment; None when its schedule slot already has one."""
        now = self.clock.now()
        with self.db.write() as tx:
            run = self.insert_run(
                tx,
                run_id or str(uuid.uuid4()),
                full_name,
                flow_name,
                name,
                parameters,
                tags,
                work_pool,
                work_queue,
                expected_start_time,
                priority,
                concurrency_key,
                scheduled_slot,
                now,
            )
            wake = (
                self.run_leases.claimers(tx, work_pool, now)
                if run and expected_start_time <= now
                else []
            )
        return run, wake

    def insert_run(
        self,
        tx: Tx,
        run_id: str,
        full_name: str,
        flow_name: str,
        name: str,
        parameters: Mapping[str, Any],
        tags: Sequence[str],
        work_pool: str | None,
        work_queue: str | None,
        expected: float,
        priority: int,
        key: str | None,
        slot: float | None,
        now: float,
    ) -> FlowRun | None:
        """Insert a SCHEDULED run of a deployment in ``tx``; None when its schedule slot has one."""
        state = Scheduled(timestamp=datetime.fromtimestamp(now, UTC))
        created = tx.rowcount(
            q.INSERT_DEPLOYMENT_RUN,
            {
                "id": run_id,
                "name": name,
                "flow": flow_name,
                "dep": full_name,
                "params": json.dumps(dict(parameters), default=repr),
                "tags": json.dumps(list(tags)),
                "st": state.type.value,
                "sn": state.name,
                "now": now,
                "expected": expected,
                "priority": priority,
                "pool": work_pool,
                "queue": work_queue,
                "slot": slot,
                "key": key,
            },
        )
        if not created:
            return None
        self.runs.insert_states(tx, "flow", [(run_id, state)])
        row = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": run_id})
        assert row is not None
        return flow_run_of(row)

    def schedule_runs(
        self, *, horizon_seconds: float, max_runs: int, now: float | None = None
    ) -> tuple[int, list[WakeTarget]]:
        """Create the runs of every active schedule due within the horizon, idempotently.

        Each run's (deployment, scheduled time) is unique in the store, so any
        number of schedulers, restarted any number of times, create each run once.
        Each deployment is handled on its own: one whose schedule cannot be
        computed, or whose runs cannot be written, is skipped (logged with its
        name and the reason, and recorded as a ``deployment.schedule_failed``
        event) and the others go on.
        """
        now = self.clock.now() if now is None else now
        after = datetime.fromtimestamp(now, UTC)
        until = datetime.fromtimestamp(min(now + horizon_seconds, EPOCH_MAX), UTC)
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_ACTIVE_SCHEDULES, {"f": False, "t": True})
        times: dict[str, set[float]] = {}
        names: dict[str, str] = {}
        failed: dict[str, str] = {}
        for dep_id, full, raw in rows:
            names[dep_id] = full
            if dep_id in failed:
                continue
            try:
                schedule = schedule_from_dict(json.loads(raw))
                found = next_times(schedule, after, max_runs, until)
            except (HeadwayError, ValueError, TypeError) as exc:
                failed[dep_id] = str(exc) or type(exc).__name__
                times.pop(dep_id, None)
                continue
            for t in found:
                times.setdefault(dep_id, set()).add(t.timestamp())
        created = 0
        wake: list[WakeTarget] = []
        for dep_id, slots in times.items():
            try:
                made, woken = self._create_scheduled_runs(dep_id, sorted(slots)[:max_runs], now)
            except (HeadwayError, ValueError, TypeError, OverflowError) as exc:
                failed[dep_id] = str(exc) or type(exc).__name__
                continue
            created += made
            wake.extend(woken)
        for dep_id, reason in failed.items():
            self._schedule_failed(names[dep_id], reason, now)
        return created, wake

    def _create_scheduled_runs(
        self, dep_id: str, slots: Sequence[float], now: float
    ) -> tuple[int, list[WakeTarget]]:
        """Insert one deployment's runs at ``slots`` (those not there yet), in one transaction."""
        wake: list[WakeTarget] = []
        with self.db.write() as tx:
            dep = tx.one(q.SELECT_DEPLOYMENT_TO_SCHEDULE + tx.dialect.for_update, {"id": dep_id})
            if dep is None or bool(dep[8]):
                return 0, wake
            full, flow, name, params_json, tags_json, pool, queue, template, _ = dep
            params = json.loads(params_json)
            key = None
            if template:
                try:
                    key = render_key(template, params)
                except HeadwayError:
                    key = None
            made = 0
            for ts in slots:
                stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d-%H%M%S")
                run = self.insert_run(
                    tx,
                    str(uuid.uuid4()),
                    full,
                    flow,
                    f"{name}-{stamp}",
                    params,
                    json.loads(tags_json),
                    pool,
                    queue,
                    ts,
                    0,
                    key,
                    ts,
                    now,
                )
                made += run is not None
            if made:
                wake.extend(self.run_leases.claimers(tx, pool, now))
        return made, wake

    def _schedule_failed(self, full_name: str, reason: str, now: float) -> None:
        """Log a deployment the scheduler skipped, and record it (once an hour per reason)."""
        logger.warning(
            "scheduler skipped deployment %s: %s",
            full_name,
            reason,
            extra={"action": "schedule", "deployment": full_name, "reason": reason},
        )
        detail = f"{full_name}: {reason}"[:2000]
        try:
            with self.db.write() as tx:
                seen = tx.one(
                    q.SELECT_RECENT_EVENT,
                    {"kind": SCHEDULE_FAILED, "detail": detail, "since": now - 3600.0},
                )
                if seen is None:
                    self.events.event(tx, now, SCHEDULE_FAILED, None, None, detail)
        except Exception as exc:  # the event is a courtesy: the pass goes on without it
            logger.warning("could not record a skipped deployment: %s", exc)

    def mark_late_runs(self, late_after_seconds: float, *, now: float | None = None) -> int:
        """Rename deployment runs not started ``late_after_seconds`` after their time Late."""
        now = self.clock.now() if now is None else now
        with self.db.write() as tx:
            ids = [r[0] for r in tx.execute(q.SELECT_LATE_RUNS, {"cut": now - late_after_seconds})]
            for run_id in ids:
                self.runs.set_state_in(
                    tx,
                    run_id,
                    Scheduled(
                        LATE,
                        message=f"not started {late_after_seconds:g}s after its scheduled time",
                    ),
                    _SCHEDULED,
                )
        return len(ids)


__all__ = ["SCHEDULE_FAILED", "Scheduling"]
