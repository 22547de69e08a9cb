"""Store operations on deployments and their schedules and concurrency limits.

Each public method is one short transaction. A deployment's limit is the slot
engine limit ``deployment:<flow>/<name>`` (one per key value,
``deployment:<flow>/<name>:<key>``, when it has a concurrency key). Pools,
queues and workers are in :mod:`headway.store.pools`; claiming in
:mod:`headway.store.claims`; runs' leases in :mod:`headway.store.run_leases`;
creating runs in :mod:`headway.store.scheduling`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from headway.core.clock import Clock
from headway.core.deployments import (
    DEFAULT_QUEUE,
    deployment_limit_name,
    validate_strategy,
)
from headway.core.limits import WakeTarget
from headway.core.models import (
    Deployment,
    DeploymentSchedule,
    ts_to_dt,
)
from headway.core.states import Cancelled
from headway.exceptions import ObjectNotFound
from headway.store.db import Database, Row, Tx
from headway.store.pools import Pools
from headway.store.queries import deployments as q
from headway.store.run_leases import RunLeases
from headway.store.slots import Limits
from headway.store.sql import in_list


def _deployment(row: Row, schedules: Sequence[DeploymentSchedule]) -> Deployment:
    return Deployment(
        id=row[0],
        full_name=row[1],
        flow_name=row[2],
        name=row[3],
        entrypoint=row[4],
        parameters=json.loads(row[5]),
        parameter_schema=None if row[6] is None else json.loads(row[6]),
        tags=tuple(json.loads(row[7])),
        work_pool=row[8],
        work_queue=row[9],
        paused=bool(row[10]),
        concurrency_limit=None if row[11] is None else int(row[11]),
        collision_strategy=row[12],
        concurrency_key=row[13],
        schedules=tuple(schedules),
        description=row[14],
        created=ts_to_dt(row[15]),
        updated=ts_to_dt(row[16]),
        code_repository=row[17],
        code_ref=row[18],
    )


class Deployments:
    """Deployments, their schedules and concurrency limits. Each public method is one
    transaction."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        limits: Limits,
        pools: Pools,
        run_leases: RunLeases,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.pools = pools
        self.run_leases = run_leases

    def upsert_deployment(
        self,
        *,
        flow_name: str,
        name: str,
        full_name: str,
        entrypoint: str | None,
        parameters: Mapping[str, Any],
        parameter_schema: Mapping[str, Any] | None,
        tags: Sequence[str],
        work_pool: str | None,
        work_queue: str | None,
        paused: bool,
        concurrency_limit: int | None,
        collision_strategy: str,
        concurrency_key: str | None,
        schedules: Sequence[Mapping[str, Any]],
        description: str = "",
        code_repository: str | None = None,
        code_ref: str | None = None,
    ) -> tuple[Deployment, list[WakeTarget]]:
        """Create or replace the deployment ``full_name`` (validated by the caller).

        When its schedules change, runs created ahead for the old ones (not yet
        started) are removed, so the scheduler creates those of the new ones.
        """
        now = self.clock.now()
        strategy = validate_strategy(collision_strategy)
        with self.db.write() as tx:
            if work_pool is not None:
                self.pools.pool_row(tx, work_pool)
                queue = work_queue or DEFAULT_QUEUE
                if tx.one(q.SELECT_WORK_QUEUE_EXISTS, {"p": work_pool, "q": queue}) is None:
                    raise ObjectNotFound(self.pools.unknown_queue(tx, work_pool, queue))
                work_queue = queue
            existing = tx.one(
                q.SELECT_DEPLOYMENT_ID_AND_PAUSED + tx.dialect.for_update, {"f": full_name}
            )
            values = {
                "full": full_name,
                "flow": flow_name,
                "name": name,
                "entry": entrypoint,
                "params": json.dumps(dict(parameters)),
                "schema": None if parameter_schema is None else json.dumps(dict(parameter_schema)),
                "tags": json.dumps(list(tags)),
                "pool": work_pool,
                "queue": work_queue,
                "paused": bool(paused),
                "limit": concurrency_limit,
                "strategy": strategy,
                "key": concurrency_key,
                "desc": description,
                "repo": code_repository,
                "ref": code_ref,
                "now": now,
            }
            if existing is None:
                dep_id = str(uuid.uuid4())
                tx.execute(q.INSERT_DEPLOYMENT, {**values, "id": dep_id})
            else:
                dep_id = existing[0]
                tx.execute(q.UPDATE_DEPLOYMENT, {**values, "id": dep_id})
            old = [
                json.loads(r[0])
                for r in tx.execute(q.SELECT_SCHEDULES_OF_DEPLOYMENT, {"d": dep_id})
            ]
            new = [dict(s) for s in schedules]
            if old != new:
                tx.execute(q.DELETE_SCHEDULES_OF_DEPLOYMENT, {"d": dep_id})
                tx.executemany(
                    q.INSERT_DEPLOYMENT_SCHEDULE,
                    [
                        {"id": str(uuid.uuid4()), "d": dep_id, "pos": i, "s": json.dumps(s),
                         "t": True}
                        for i, s in enumerate(new)
                    ],
                )  # fmt: skip
            if old != new or paused:
                self._drop_scheduled_ahead(tx, full_name, now)
            wake = self._apply_deployment_limit(tx, full_name, concurrency_limit, concurrency_key)
            wake.extend(self.run_leases.claimers(tx, work_pool, now))
            dep = self._read_deployment(tx, full_name)
        return dep, wake

    def _apply_deployment_limit(
        self, tx: Tx, full: str, limit: int | None, key: str | None
    ) -> list[WakeTarget]:
        """Make the limit rows of a deployment match its settings."""
        base = deployment_limit_name(full)
        wake: list[WakeTarget] = []
        if limit is None:
            wake.extend(self.limits.put_limit(tx, base, None))
            for name in self.limits.prefixed_limits(tx, base + ":"):
                wake.extend(self.limits.put_limit(tx, name, None))
            return wake
        # Keyed: one limit per key (created when a run of that key is first claimed);
        # otherwise the one deployment-wide limit.
        if key is None:
            wake.extend(self.limits.put_limit(tx, base, limit))
        else:
            wake.extend(self.limits.put_limit(tx, base, None))
        for name in self.limits.prefixed_limits(tx, base + ":"):
            wake.extend(self.limits.put_limit(tx, name, limit if key is not None else None))
        return wake

    def _drop_scheduled_ahead(self, tx: Tx, full: str, now: float) -> int:
        """Delete a deployment's runs created ahead by its schedules that are not due yet."""
        ids = [r[0] for r in tx.execute(q.SELECT_RUNS_SCHEDULED_AHEAD, {"d": full, "now": now})]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            params: dict[str, Any] = {}
            marks = in_list("i", chunk, params)
            tx.execute(q.delete_states_of_runs(marks), params)
            tx.execute(q.delete_flow_runs(marks), params)
        return len(ids)

    def _read_deployment(self, tx: Tx, full_name: str) -> Deployment:
        row = tx.one(q.SELECT_DEPLOYMENT, {"f": full_name})
        if row is None:
            raise ObjectNotFound(
                f"no deployment named {full_name!r} (names are <flow>/<deployment>;"
                " see `headway deployment ls`)"
            )
        return _deployment(row, self._schedules(tx, [row[0]]).get(row[0], []))

    def _schedules(self, tx: Tx, ids: Sequence[str]) -> dict[str, list[DeploymentSchedule]]:
        out: dict[str, list[DeploymentSchedule]] = {}
        if not ids:
            return out
        params: dict[str, Any] = {}
        marks = in_list("d", list(ids), params)
        for sid, dep, sched, active in tx.execute(q.select_schedules_of_deployments(marks), params):
            out.setdefault(dep, []).append(DeploymentSchedule(sid, json.loads(sched), bool(active)))
        return out

    def read_deployment(self, full_name: str) -> Deployment:
        """One deployment by ``<flow>/<name>``; ObjectNotFound if unknown."""
        with self.db.read() as tx:
            return self._read_deployment(tx, full_name)

    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        """Deployments by name, optionally of one pool or flow."""
        params: dict[str, Any] = {}
        if work_pool is not None:
            params["pool"] = work_pool
        if flow_name is not None:
            params["flow"] = flow_name
        query = q.select_deployments(of_pool=work_pool is not None, of_flow=flow_name is not None)
        with self.db.read() as tx:
            rows = tx.execute(query, params)
            schedules = self._schedules(tx, [r[0] for r in rows])
        return [_deployment(r, schedules.get(r[0], [])) for r in rows]

    def set_deployment_paused(self, full_name: str, paused: bool) -> Deployment:
        """Pause (no new scheduled runs; those created ahead are removed) or resume."""
        now = self.clock.now()
        with self.db.write() as tx:
            dep = self._read_deployment(tx, full_name)
            tx.execute(q.SET_DEPLOYMENT_PAUSED, {"p": bool(paused), "now": now, "id": dep.id})
            if paused:
                self._drop_scheduled_ahead(tx, full_name, now)
            return self._read_deployment(tx, full_name)

    def set_deployment_concurrency(
        self,
        full_name: str,
        limit: int | None,
        collision_strategy: str | None = None,
        concurrency_key: str | None = None,
    ) -> tuple[Deployment, list[WakeTarget]]:
        """Set or clear (``limit=None``) the deployment's concurrency limit, live."""
        now = self.clock.now()
        with self.db.write() as tx:
            dep = self._read_deployment(tx, full_name)
            strategy = validate_strategy(collision_strategy or dep.collision_strategy)
            key = concurrency_key if limit is not None else None
            tx.execute(
                q.SET_DEPLOYMENT_CONCURRENCY,
                {"l": limit, "s": strategy, "k": key, "now": now, "id": dep.id},
            )
            wake = self._apply_deployment_limit(tx, full_name, limit, key)
            wake.extend(self.run_leases.claimers(tx, dep.work_pool, now))
            return self._read_deployment(tx, full_name), wake

    def delete_deployment(self, full_name: str) -> list[WakeTarget]:
        """Delete a deployment; its runs not started yet end CANCELLED, active ones go on."""
        now = self.clock.now()
        with self.db.write() as tx:
            dep = self._read_deployment(tx, full_name)
            self._drop_scheduled_ahead(tx, full_name, now)
            waiting = [
                r[0] for r in tx.execute(q.SELECT_SCHEDULED_RUNS_OF_DEPLOYMENT, {"d": full_name})
            ]
            for run_id in waiting:
                self.run_leases.finish_run(
                    tx, run_id, Cancelled(message=f"deployment {full_name} was deleted"), None
                )
            tx.execute(q.DELETE_SCHEDULES_OF_DEPLOYMENT, {"d": dep.id})
            tx.execute(q.DELETE_DEPLOYMENT_KEYS, {"d": full_name})
            tx.execute(q.DELETE_DEPLOYMENT, {"d": dep.id})
            base = deployment_limit_name(full_name)
            wake = self.limits.drop_limits(tx, [base, *self.limits.prefixed_limits(tx, base + ":")])
        return wake


__all__ = ["Deployments"]
