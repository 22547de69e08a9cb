"""Store operations on work pools, their queues and workers, and the limits of each.

Each public method is one short transaction. Limits of pools, queues and
deployments live in the slot engine's ``limits`` table (``pool:<pool>``,
``queue:<pool>/<queue>``, ``deployment:<flow>/<name>[:<key>]``): setting one
creates or re-activates its row, clearing one deactivates it (holders keep
their leases and give them back as usual), so a limit is always exact.
"""

from __future__ import annotations

import uuid
from typing import Any

from headway.core.clock import Clock
from headway.core.deployments import (
    DEFAULT_QUEUE,
    pool_limit_name,
    queue_limit_name,
    validate_concurrency_limit,
    validate_object_name,
    validate_priority,
)
from headway.core.limits import WakeTarget
from headway.core.models import Worker, WorkPool, WorkQueue, ts_to_dt
from headway.exceptions import ConflictError, ObjectAlreadyExists, ObjectNotFound
from headway.store.db import Database, Row, Tx
from headway.store.queries import pools as q
from headway.store.run_leases import RunLeases
from headway.store.slots import Limits


class Pools:
    """Work pools, their queues and workers. Each public method is one transaction."""

    def __init__(self, db: Database, clock: Clock, limits: Limits, run_leases: RunLeases) -> None:
        self.db = db
        self.clock = clock
        self.limits = limits
        self.run_leases = run_leases

    def create_work_pool(
        self,
        name: str,
        *,
        concurrency_limit: int | None = None,
        description: str = "",
        type: str = "process",
    ) -> WorkPool:
        """Create a pool with its ``default`` queue; ObjectAlreadyExists if the name is taken."""
        name = validate_object_name(name, "work pool")
        limit = (
            None
            if concurrency_limit is None
            else validate_concurrency_limit(concurrency_limit, minimum=0)
        )
        now = self.clock.now()
        with self.db.write() as tx:
            created = tx.rowcount(
                q.INSERT_WORK_POOL,
                {"id": str(uuid.uuid4()), "name": name, "type": type, "f": False,
                 "d": description, "now": now},
            )  # fmt: skip
            if not created:
                raise ObjectAlreadyExists(f"a work pool named {name!r} already exists")
            self._insert_queue(tx, name, DEFAULT_QUEUE, 0, now)
            self.limits.put_limit(tx, pool_limit_name(name), limit)
        return self.read_work_pool(name)

    def _insert_queue(self, tx: Tx, pool: str, name: str, priority: int, now: float) -> None:
        created = tx.rowcount(
            q.INSERT_WORK_QUEUE,
            {"id": str(uuid.uuid4()), "pool": pool, "name": name, "p": priority, "f": False,
             "now": now},
        )  # fmt: skip
        if not created:
            raise ObjectAlreadyExists(f"work pool {pool!r} already has a queue named {name!r}")

    def pool_row(self, tx: Tx, name: str, *, lock: bool = False) -> Row:
        """The pool's row (locked with ``lock``); ObjectNotFound naming the known pools."""
        row = tx.one(q.SELECT_WORK_POOL + (tx.dialect.for_update if lock else ""), {"n": name})
        if row is None:
            known = [r[0] for r in tx.execute(q.SELECT_WORK_POOL_NAMES)]
            hint = f"; known pools: {', '.join(known)}" if known else "; create one first"
            raise ObjectNotFound(f"no work pool named {name!r}{hint}")
        return row

    def read_work_pool(self, name: str) -> WorkPool:
        """A pool with its limit, queues and run counts; ObjectNotFound if unknown."""
        now = self.clock.now()
        with self.db.read() as tx:
            row = self.pool_row(tx, name)
            return self._work_pool(tx, row, now)

    def list_work_pools(self) -> list[WorkPool]:
        """Every pool, by name."""
        now = self.clock.now()
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_WORK_POOLS)
            return [self._work_pool(tx, r, now) for r in rows]

    def _work_pool(self, tx: Tx, row: Row, now: float) -> WorkPool:
        name = row[0]
        queues = self._queues(tx, name, now)
        limits = self.limits.limit_values(tx, [pool_limit_name(name)], now)
        return WorkPool(
            name=name,
            type=row[1],
            paused=bool(row[2]),
            concurrency_limit=limits.get(pool_limit_name(name)),
            running=sum(q.running for q in queues),
            waiting=sum(q.waiting for q in queues),
            description=row[3],
            queues=tuple(queues),
            created=ts_to_dt(row[4]),
            id=row[5],
            updated=ts_to_dt(row[6]),
        )

    def _queues(self, tx: Tx, pool: str, now: float) -> list[WorkQueue]:
        rows = tx.execute(q.SELECT_QUEUES_OF_POOL, {"pool": pool})
        counts: dict[tuple[str, str], int] = {}
        for queue, kind, count in tx.execute(q.COUNT_RUNS_PER_QUEUE, {"pool": pool, "now": now}):
            counts[(queue, kind)] = int(count)
        limits = self.limits.limit_values(tx, [queue_limit_name(pool, r[2]) for r in rows], now)
        return [
            WorkQueue(
                id=r[0],
                pool=r[1],
                name=r[2],
                priority=int(r[3]),
                paused=bool(r[4]),
                concurrency_limit=limits.get(queue_limit_name(pool, r[2])),
                running=counts.get((r[2], "running"), 0),
                waiting=counts.get((r[2], "waiting"), 0),
                created=ts_to_dt(r[5]),
                updated=ts_to_dt(r[6]),
            )
            for r in rows
        ]

    def set_work_pool_paused(self, name: str, paused: bool) -> WorkPool:
        """Pause (workers claim nothing from it) or resume a pool."""
        with self.db.write() as tx:
            self.pool_row(tx, name, lock=True)
            tx.execute(
                q.SET_WORK_POOL_PAUSED, {"p": bool(paused), "n": name, "now": self.clock.now()}
            )
        return self.read_work_pool(name)

    def set_work_pool_limit(
        self, name: str, limit: int | None
    ) -> tuple[WorkPool, list[WakeTarget]]:
        """Set (or clear, with None) the pool's limit on its PENDING and RUNNING runs."""
        value = None if limit is None else validate_concurrency_limit(limit, minimum=0)
        now = self.clock.now()
        with self.db.write() as tx:
            self.pool_row(tx, name, lock=True)
            wake = self.limits.put_limit(tx, pool_limit_name(name), value)
            tx.execute(q.TOUCH_WORK_POOL, {"now": now, "n": name})
            wake.extend(self.run_leases.claimers(tx, name, now))
        return self.read_work_pool(name), wake

    def delete_work_pool(self, name: str) -> list[WakeTarget]:
        """Delete a pool, its queues, workers and limits; ConflictError while deployments use it."""
        with self.db.write() as tx:
            self.pool_row(tx, name, lock=True)
            users = [r[0] for r in tx.execute(q.SELECT_DEPLOYMENT_NAMES_OF_POOL, {"n": name})]
            if users:
                shown = ", ".join(users[:5]) + (" ..." if len(users) > 5 else "")
                raise ConflictError(
                    f"work pool {name!r} is used by {len(users)} deployment(s) ({shown});"
                    " delete them first"
                )
            active = tx.one(q.COUNT_ACTIVE_RUNS_OF_POOL, {"n": name})
            if active and int(active[0]):
                raise ConflictError(
                    f"work pool {name!r} has {int(active[0])} active run(s); wait for them"
                    " or cancel them first"
                )
            queues = [r[0] for r in tx.execute(q.SELECT_QUEUE_NAMES_OF_POOL, {"n": name})]
            wake: list[WakeTarget] = []
            for queue in queues:
                wake.extend(self.limits.drop_limits(tx, [queue_limit_name(name, queue)]))
            wake.extend(self.limits.drop_limits(tx, [pool_limit_name(name)]))
            tx.execute(q.DELETE_QUEUES_OF_POOL, {"n": name})
            tx.execute(q.DELETE_WORKERS_OF_POOL, {"n": name})
            tx.execute(q.DELETE_WORK_POOL, {"n": name})
        return wake

    def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int = 0,
        concurrency_limit: int | None = None,
    ) -> WorkQueue:
        """Create a queue in ``pool``; ObjectAlreadyExists if the pool has one of that name."""
        name = validate_object_name(name, "work queue")
        priority = validate_priority(priority, "queue priority")
        limit = (
            None
            if concurrency_limit is None
            else validate_concurrency_limit(concurrency_limit, minimum=0)
        )
        now = self.clock.now()
        with self.db.write() as tx:
            self.pool_row(tx, pool, lock=True)
            self._insert_queue(tx, pool, name, priority, now)
            self.limits.put_limit(tx, queue_limit_name(pool, name), limit)
        return self.read_work_queue(pool, name)

    def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        """One queue with its limit and run counts; ObjectNotFound if unknown."""
        now = self.clock.now()
        with self.db.read() as tx:
            self.pool_row(tx, pool)
            for queue in self._queues(tx, pool, now):
                if queue.name == name:
                    return queue
            raise ObjectNotFound(self.unknown_queue(tx, pool, name))

    def unknown_queue(self, tx: Tx, pool: str, name: str) -> str:
        """The message for a queue ``pool`` does not have, naming those it has."""
        known = [r[0] for r in tx.execute(q.SELECT_QUEUE_NAMES_OF_POOL_SORTED, {"p": pool})]
        return f"work pool {pool!r} has no queue named {name!r}; its queues: {', '.join(known)}"

    def list_work_queues(self, pool: str | None = None) -> list[WorkQueue]:
        """The queues of one pool, or of every pool."""
        now = self.clock.now()
        with self.db.read() as tx:
            if pool is not None:
                self.pool_row(tx, pool)
                return self._queues(tx, pool, now)
            pools = [r[0] for r in tx.execute(q.SELECT_WORK_POOL_NAMES)]
            return [q for p in pools for q in self._queues(tx, p, now)]

    def update_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int | None = None,
        paused: bool | None = None,
    ) -> WorkQueue:
        """Change a queue's priority or pause it."""
        if priority is not None:
            priority = validate_priority(priority, "queue priority")
        now = self.clock.now()
        with self.db.write() as tx:
            self._lock_queue(tx, pool, name)
            if priority is not None:
                tx.execute(
                    q.SET_WORK_QUEUE_PRIORITY,
                    {"p": priority, "pool": pool, "n": name, "now": now},
                )
            if paused is not None:
                tx.execute(
                    q.SET_WORK_QUEUE_PAUSED,
                    {"p": bool(paused), "pool": pool, "n": name, "now": now},
                )
        return self.read_work_queue(pool, name)

    def _lock_queue(self, tx: Tx, pool: str, name: str) -> None:
        self.pool_row(tx, pool, lock=True)
        row = tx.one(q.SELECT_WORK_QUEUE_ID, {"pool": pool, "n": name})
        if row is None:
            raise ObjectNotFound(self.unknown_queue(tx, pool, name))

    def set_work_queue_limit(
        self, pool: str, name: str, limit: int | None
    ) -> tuple[WorkQueue, list[WakeTarget]]:
        """Set (or clear, with None) the queue's limit on its PENDING and RUNNING runs."""
        value = None if limit is None else validate_concurrency_limit(limit, minimum=0)
        now = self.clock.now()
        with self.db.write() as tx:
            self._lock_queue(tx, pool, name)
            wake = self.limits.put_limit(tx, queue_limit_name(pool, name), value)
            tx.execute(q.TOUCH_WORK_QUEUE, {"now": now, "pool": pool, "n": name})
            wake.extend(self.run_leases.claimers(tx, pool, now))
        return self.read_work_queue(pool, name), wake

    def delete_work_queue(self, pool: str, name: str) -> list[WakeTarget]:
        """Delete a queue (not ``default``); ConflictError while deployments use it."""
        if name == DEFAULT_QUEUE:
            raise ConflictError(f"the {DEFAULT_QUEUE!r} queue of a pool cannot be deleted")
        with self.db.write() as tx:
            self._lock_queue(tx, pool, name)
            users = tx.one(q.COUNT_DEPLOYMENTS_OF_QUEUE, {"p": pool, "q": name})
            if users and int(users[0]):
                raise ConflictError(
                    f"queue {name!r} of pool {pool!r} is used by {int(users[0])} deployment(s)"
                )
            wake = self.limits.drop_limits(tx, [queue_limit_name(pool, name)])
            tx.execute(q.DELETE_WORK_QUEUE, {"p": pool, "q": name})
        return wake

    def register_worker(
        self,
        pool: str,
        name: str,
        *,
        pid: int | None,
        host: str | None,
        wake_address: str | None,
    ) -> Worker:
        """Record (or refresh) a worker of ``pool`` (``""``: a ``serve()`` process)."""
        now = self.clock.now()
        with self.db.write() as tx:
            if pool:
                self.pool_row(tx, pool)
            tx.execute(
                q.UPSERT_WORKER,
                {"id": str(uuid.uuid4()), "pool": pool, "name": name, "pid": pid, "host": host,
                 "addr": wake_address, "now": now},
            )  # fmt: skip
            row = tx.one(q.SELECT_WORKER, {"pool": pool, "name": name})
        assert row is not None
        return Worker(
            name=row[1], pool=row[2], pid=row[3], host=row[4],
            last_heartbeat=ts_to_dt(row[5]), id=row[0],
        )  # fmt: skip

    def list_workers(self, pool: str | None = None, *, offline_after: float = 60.0) -> list[Worker]:
        """Workers (of one pool), most recently heard from first."""
        now = self.clock.now()
        params: dict[str, Any] = {}
        query = q.SELECT_WORKERS
        if pool is not None:
            query, params["pool"] = q.SELECT_WORKERS_OF_POOL, pool
        with self.db.read() as tx:
            rows = tx.execute(query, params)
        return [
            Worker(
                name=r[1], pool=r[2], pid=r[3], host=r[4], last_heartbeat=ts_to_dt(r[5]),
                online=float(r[5]) > now - offline_after, running=int(r[6]), id=r[0],
            )
            for r in rows
        ]  # fmt: skip

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        with self.db.write() as tx:
            tx.execute(q.DELETE_WORKER, {"id": worker_id})


__all__ = ["Pools"]
