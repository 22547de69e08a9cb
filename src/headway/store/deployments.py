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
from headway.store.run_leases import RunLeases
from headway.store.slots import Limits
from headway.store.sql import in_list

_DEPLOYMENT_COLUMNS = (
    "id, full_name, flow_name, name, entrypoint, parameters, parameter_schema, tags,"
    " work_pool, work_queue, paused, concurrency_limit, collision_strategy, concurrency_key,"
    " description, created, updated, code_repository, code_ref"
)


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
                if (
                    tx.one(
                        "SELECT 1 FROM work_queues WHERE pool = :p AND name = :q",
                        {"p": work_pool, "q": queue},
                    )
                    is None
                ):
                    raise ObjectNotFound(self.pools.unknown_queue(tx, work_pool, queue))
                work_queue = queue
            existing = tx.one(
                f"SELECT id, paused FROM deployments WHERE full_name = :f{tx.dialect.for_update}",
                {"f": full_name},
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
                tx.execute(
                    "INSERT INTO deployments (id, full_name, flow_name, name, entrypoint,"
                    " parameters, parameter_schema, tags, work_pool, work_queue, paused,"
                    " concurrency_limit, collision_strategy, concurrency_key, description,"
                    " created, updated, code_repository, code_ref) VALUES (:id, :full, :flow,"
                    " :name, :entry, :params, :schema, :tags, :pool, :queue, :paused, :limit,"
                    " :strategy, :key, :desc, :now, :now, :repo, :ref)",
                    {**values, "id": dep_id},
                )
            else:
                dep_id = existing[0]
                tx.execute(
                    "UPDATE deployments SET flow_name = :flow, name = :name, entrypoint = :entry,"
                    " parameters = :params, parameter_schema = :schema, tags = :tags,"
                    " work_pool = :pool, work_queue = :queue, paused = :paused,"
                    " concurrency_limit = :limit, collision_strategy = :strategy,"
                    " concurrency_key = :key, description = :desc, updated = :now,"
                    " code_repository = :repo, code_ref = :ref WHERE id = :id",
                    {**values, "id": dep_id},
                )
            old = [
                json.loads(r[0])
                for r in tx.execute(
                    "SELECT schedule FROM deployment_schedules WHERE deployment_id = :d"
                    " ORDER BY position",
                    {"d": dep_id},
                )
            ]
            new = [dict(s) for s in schedules]
            if old != new:
                tx.execute(
                    "DELETE FROM deployment_schedules WHERE deployment_id = :d", {"d": dep_id}
                )
                tx.executemany(
                    "INSERT INTO deployment_schedules (id, deployment_id, position, schedule,"
                    " active) VALUES (:id, :d, :pos, :s, :t)",
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
            dep = self._read_deployment(tx, "full_name = :f", {"f": full_name})
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
        ids = [
            r[0]
            for r in tx.execute(
                "SELECT id FROM flow_runs WHERE deployment = :d AND state_type = 'SCHEDULED'"
                " AND scheduled_slot IS NOT NULL AND expected_start_time > :now",
                {"d": full, "now": now},
            )
        ]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            params: dict[str, Any] = {}
            marks = in_list("i", chunk, params)
            tx.execute(f"DELETE FROM states WHERE run_id IN ({marks})", params)
            tx.execute(f"DELETE FROM flow_runs WHERE id IN ({marks})", params)
        return len(ids)

    def _read_deployment(self, tx: Tx, where: str, params: dict[str, Any]) -> Deployment:
        row = tx.one(f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE {where}", params)
        if row is None:
            value = next(iter(params.values()), "")
            raise ObjectNotFound(
                f"no deployment named {value!r} (names are <flow>/<deployment>;"
                " see `headway deployment ls`)"
            )
        return _deployment(row, self._schedules(tx, [row[0]]).get(row[0], []))

    def _schedules(self, tx: Tx, ids: Sequence[str]) -> dict[str, list[DeploymentSchedule]]:
        out: dict[str, list[DeploymentSchedule]] = {}
        if not ids:
            return out
        params: dict[str, Any] = {}
        marks = in_list("d", list(ids), params)
        for sid, dep, sched, active in tx.execute(
            "SELECT id, deployment_id, schedule, active FROM deployment_schedules"
            f" WHERE deployment_id IN ({marks}) ORDER BY position",
            params,
        ):
            out.setdefault(dep, []).append(DeploymentSchedule(sid, json.loads(sched), bool(active)))
        return out

    def read_deployment(self, full_name: str) -> Deployment:
        """One deployment by ``<flow>/<name>``; ObjectNotFound if unknown."""
        with self.db.read() as tx:
            return self._read_deployment(tx, "full_name = :f", {"f": full_name})

    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        """Deployments by name, optionally of one pool or flow."""
        where, params = [], {}
        if work_pool is not None:
            where.append("work_pool = :pool")
            params["pool"] = work_pool
        if flow_name is not None:
            where.append("flow_name = :flow")
            params["flow"] = flow_name
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.db.read() as tx:
            rows = tx.execute(
                f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments{clause} ORDER BY full_name",
                params,
            )
            schedules = self._schedules(tx, [r[0] for r in rows])
        return [_deployment(r, schedules.get(r[0], [])) for r in rows]

    def set_deployment_paused(self, full_name: str, paused: bool) -> Deployment:
        """Pause (no new scheduled runs; those created ahead are removed) or resume."""
        now = self.clock.now()
        with self.db.write() as tx:
            dep = self._read_deployment(tx, "full_name = :f", {"f": full_name})
            tx.execute(
                "UPDATE deployments SET paused = :p, updated = :now WHERE id = :id",
                {"p": bool(paused), "now": now, "id": dep.id},
            )
            if paused:
                self._drop_scheduled_ahead(tx, full_name, now)
            return self._read_deployment(tx, "full_name = :f", {"f": full_name})

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
            dep = self._read_deployment(tx, "full_name = :f", {"f": full_name})
            strategy = validate_strategy(collision_strategy or dep.collision_strategy)
            key = concurrency_key if limit is not None else None
            tx.execute(
                "UPDATE deployments SET concurrency_limit = :l, collision_strategy = :s,"
                " concurrency_key = :k, updated = :now WHERE id = :id",
                {"l": limit, "s": strategy, "k": key, "now": now, "id": dep.id},
            )
            wake = self._apply_deployment_limit(tx, full_name, limit, key)
            wake.extend(self.run_leases.claimers(tx, dep.work_pool, now))
            return self._read_deployment(tx, "full_name = :f", {"f": full_name}), wake

    def delete_deployment(self, full_name: str) -> list[WakeTarget]:
        """Delete a deployment; its runs not started yet end CANCELLED, active ones go on."""
        now = self.clock.now()
        with self.db.write() as tx:
            dep = self._read_deployment(tx, "full_name = :f", {"f": full_name})
            self._drop_scheduled_ahead(tx, full_name, now)
            waiting = [
                r[0]
                for r in tx.execute(
                    "SELECT id FROM flow_runs WHERE deployment = :d AND state_type = 'SCHEDULED'",
                    {"d": full_name},
                )
            ]
            for run_id in waiting:
                self.run_leases.finish_run(
                    tx, run_id, Cancelled(message=f"deployment {full_name} was deleted"), None
                )
            tx.execute("DELETE FROM deployment_schedules WHERE deployment_id = :d", {"d": dep.id})
            tx.execute("DELETE FROM deployment_keys WHERE deployment = :d", {"d": full_name})
            tx.execute("DELETE FROM deployments WHERE id = :d", {"d": dep.id})
            base = deployment_limit_name(full_name)
            wake = self.limits.drop_limits(tx, [base, *self.limits.prefixed_limits(tx, base + ":")])
        return wake


__all__ = ["Deployments"]
