"""Store operations that move deployment runs: create, schedule, claim, lease, cancel, finish.

**Claiming is one transaction.** Claims on one pool are serialised by a lock
on its row (``BEGIN IMMEDIATE`` on SQLite); inside, due runs are picked in
order (run priority, queue priority, scheduled time; concurrency keys of a
deployment round-robin), each takes the pool, queue and deployment slots it
needs through the slot engine's in-transaction acquire, and moves to PENDING
holding a slot lease (holder kind ``flow_run``) and a run lease
(``lease_expires``) its worker renews. A run that finds its deployment's
limit full follows the collision strategy: it waits as
SCHEDULED/AwaitingConcurrencySlot with ``blocked_on`` naming the limit
(ENQUEUE), ends CANCELLED (CANCEL_NEW), or has the active runs cancelled and
waits for them to stop (CANCEL_IN_PROGRESS).

**Bounded work whatever the backlog.** Fresh runs are read per queue from the
claim index (oldest due first, a bounded window); runs waiting on a deployment
limit are set aside (``blocked_on``) and read back, per limit, only when that
limit has room, found by a skip scan over the distinct limits waited on.

**Leases.** A run whose lease expired (its worker died) ends CRASHED (CANCELLED
if it was being cancelled) and gives its slots back, swept lazily in every
claim and by every heartbeat.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from headway.core.deployments import (
    CANCEL_IN_PROGRESS,
    CANCEL_NEW,
    deployment_limit_name,
    pool_limit_name,
    queue_limit_name,
    render_key,
)
from headway.core.limits import ProcessInfo, WakeTarget, decayed
from headway.core.models import ClaimedRun, FlowRun, HeartbeatResult
from headway.core.schedules import next_times, schedule_from_dict
from headway.core.states import (
    AWAITING_CONCURRENCY_SLOT,
    LATE,
    Cancelled,
    Cancelling,
    Crashed,
    Pending,
    Scheduled,
    State,
    StateType,
)
from headway.exceptions import ConflictError, HeadwayError, ObjectNotFound
from headway.store.db import Row, Tx
from headway.store.dialects import is_transient_conflict
from headway.store.events import CLAIM_LATENCY
from headway.store.runs import _FLOW_COLUMNS, _flow_run

if TYPE_CHECKING:
    from headway.core.limits import Mode
    from headway.core.models import Limit
    from headway.settings import Settings
    from headway.store.db import Database
    from headway.store.slots import Attempt

    class _Base:
        """What this mixin uses of its siblings in Store (RunStore, SlotStore, DeploymentStore)."""

        db: Database
        settings: Settings

        def _set_flow_run_state(
            self, tx: Tx, run_id: str, state: State, expect: frozenset[StateType] | None
        ) -> None: ...
        def _insert_states(self, tx: Tx, kind: str, items: Sequence[tuple[str, State]]) -> None: ...
        def _pool_row(self, tx: Tx, name: str, *, lock: bool = False) -> Row: ...
        def _event(
            self,
            tx: Tx,
            now: float,
            kind: str,
            limit_name: str | None,
            slots: int | None,
            detail: str | None,
            run_id: str | None = None,
            seconds: float | None = None,
        ) -> None: ...
        def _observe(self, tx: Tx, metric: str, labels: Sequence[str], value: float) -> None: ...
        def create_limit(
            self,
            name: str,
            limit: int,
            *,
            active: bool = True,
            slot_decay_per_second: float = 0.0,
            active_slots: int = 0,
        ) -> Limit: ...
        def update_limit(
            self,
            name: str,
            *,
            limit: int | None = None,
            active: bool | None = None,
            slot_decay_per_second: float | None = None,
            active_slots: int | None = None,
        ) -> tuple[Limit, list[WakeTarget]]: ...
        def delete_limit(self, name: str, *, force: bool = False) -> list[WakeTarget]: ...
        def acquire_slots(
            self,
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
            strict: bool = False,
        ) -> Attempt: ...
        def release_slots(self, lease_id: str) -> tuple[bool, list[WakeTarget]]: ...
        def renew_leases(self, lease_ids: Sequence[str], lease_seconds: float) -> list[str]: ...

else:
    _Base = object

T = TypeVar("T")
_SCHEDULED = frozenset({StateType.SCHEDULED})
_HOLDING = ("PENDING", "RUNNING", "PAUSED")
#: Fresh due runs read per queue in one claim: enough to fill any worker, bounded.
CLAIM_WINDOW = 16
#: A claim also ends runs whose lease expired, at most this often per process.
_CLAIM_SWEEP_EVERY = 0.25
#: Workers heard from within this long are woken when their pool has work.
_CLAIMER_TTL = 600.0
_CANDIDATE_COLUMNS = (
    "id, deployment, work_queue, priority, expected_start_time, parameters,"
    " concurrency_key, state_name, blocked_on, created, work_pool"
)


@dataclass(frozen=True)
class ClaimResult:
    """What one claim did: the runs taken, who to wake, when the next run is due."""

    claimed: list[ClaimedRun]
    wake: list[WakeTarget]
    #: Epoch seconds of the next scheduled run in scope that is not due yet.
    next_due: float | None = None


@dataclass
class _Candidate:
    id: str
    deployment: str | None
    queue: str | None
    priority: int
    expected: float
    parameters: str
    key: str | None
    state_name: str
    blocked_on: str | None
    created: float
    pool: str | None = None
    queue_priority: int = 0
    limit: str | None = None
    order: tuple[Any, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, row: Row, queue_priority: int) -> _Candidate:
        return cls(
            id=row[0],
            deployment=row[1],
            queue=row[2],
            priority=int(row[3]),
            expected=float(row[4]),
            parameters=row[5],
            key=row[6],
            state_name=row[7],
            blocked_on=row[8],
            created=float(row[9]),
            pool=row[10],
            queue_priority=queue_priority,
        )


@dataclass(frozen=True)
class _DeploymentInfo:
    limit: int | None
    strategy: str
    key_template: str | None
    entrypoint: str | None


def retrying(operation: Callable[[], T], attempts: int = 6) -> T:
    """Run a one-transaction operation again when PostgreSQL aborted it (deadlock).

    A claim locks its pool, then runs, then limits; a run ending locks the run,
    then limits: two such transactions can each wait on the other, and the
    database ends one of them. Nothing was written; running it again succeeds.
    """
    for attempt in range(attempts):
        try:
            return operation()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient_conflict(exc):
                raise
            time.sleep(random.uniform(0.005, 0.02) * 2**attempt)
    raise AssertionError("unreachable")


def _marks(prefix: str, values: Sequence[Any], params: dict[str, Any]) -> str:
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
    return ", ".join(f":{prefix}{i}" for i in range(len(values)))


def _room(tx: Tx, names: Sequence[str], now: float) -> dict[str, float]:
    """Free slots per limit name; names without an active limit are unlimited."""
    out = dict.fromkeys(names, float("inf"))
    if not names:
        return out
    params: dict[str, Any] = {}
    marks = _marks("n", list(names), params)
    for name, limit, active, slots, decay, at in tx.execute(
        "SELECT name, slot_limit, active, active_slots, slot_decay_per_second, decayed_at"
        f" FROM limits WHERE name IN ({marks})",
        params,
    ):
        if bool(active):
            out[name] = float(limit) - decayed(float(slots), float(decay), float(at), now)
    return out


def round_robin_order(candidates: list[_Candidate], last_served: Mapping[str, float]) -> None:
    """Give each candidate its ``order``: FIFO within priority, keys of a deployment in turn.

    Runs keep the places FIFO gives their deployment; within those places the
    deployment's keys take turns, least recently served first, so one key with
    many waiting runs cannot starve the others.
    """
    for c in candidates:
        c.order = (-c.priority, -c.queue_priority, c.expected, c.created, c.id)
    groups: dict[tuple[str, int, int], list[_Candidate]] = {}
    for c in candidates:
        if c.key is not None and c.deployment is not None:
            groups.setdefault((c.deployment, c.priority, c.queue_priority), []).append(c)
    for (deployment, _, _), members in groups.items():
        by_key: dict[str, list[_Candidate]] = {}
        for c in sorted(members, key=lambda m: m.order):
            assert c.key is not None
            by_key.setdefault(c.key, []).append(c)
        if len(by_key) < 2:
            continue
        keys = sorted(
            by_key,
            key=lambda k: (
                last_served.get(f"{deployment}\x00{k}", float("-inf")),
                by_key[k][0].order,
            ),
        )
        turns: list[_Candidate] = []
        depth = 0
        while len(turns) < len(members):
            for k in keys:
                if depth < len(by_key[k]):
                    turns.append(by_key[k][depth])
            depth += 1
        places = sorted(c.order for c in members)
        for c, place in zip(turns, places, strict=True):
            c.order = place


class ClaimStore(_Base):
    """Deployment runs: creation, scheduling, claiming, leases, cancellation."""

    # -- wake-up targets -----------------------------------------------------------
    def _claimers(self, tx: Tx, pool: str | None, now: float) -> list[WakeTarget]:
        """The workers to wake when ``pool`` (None: ``serve()`` processes) may have work."""
        rows = tx.execute(
            "SELECT id, wake_address, host, pid FROM workers WHERE pool = :pool"
            " AND wake_address IS NOT NULL AND last_heartbeat > :cut",
            {"pool": pool or "", "cut": now - _CLAIMER_TTL},
        )
        return [WakeTarget(f"claim:{r[0]}", r[1], r[2], int(r[3] or 0)) for r in rows]

    def pool_claimers(self, pool: str | None) -> list[WakeTarget]:
        """The workers to wake when ``pool`` may have work (one read)."""
        with self.db.read() as tx:
            return self._claimers(tx, pool, time.time())

    def _worker_targets(self, tx: Tx, worker_ids: Sequence[str]) -> list[WakeTarget]:
        """The workers to tell that one of their runs is being cancelled."""
        ids = sorted({w for w in worker_ids if w})
        if not ids:
            return []
        params: dict[str, Any] = {}
        marks = _marks("w", ids, params)
        rows = tx.execute(
            f"SELECT id, wake_address, host, pid FROM workers WHERE id IN ({marks})"
            " AND wake_address IS NOT NULL",
            params,
        )
        return [WakeTarget(f"worker:{r[0]}", r[1], r[2], int(r[3] or 0)) for r in rows]

    # -- finishing -----------------------------------------------------------------
    def _finish_run(
        self, tx: Tx, run_id: str, state: State, expect: frozenset[StateType] | None
    ) -> list[WakeTarget]:
        """Change a run's state inside ``tx``; a final state gives its slots back.

        So does PENDING -> SCHEDULED: a claimed run handed back before it started
        (its worker is stopping) waits to be claimed again. RUNNING -> SCHEDULED
        (AwaitingRetry) keeps everything: the run retries in its own process.
        """
        unclaim = False
        if state.type is StateType.SCHEDULED:
            before = tx.one(
                "SELECT state_type, lease_expires FROM flow_runs WHERE id = :id"
                + tx.dialect.for_update,
                {"id": run_id},
            )
            unclaim = (
                before is not None
                and before[0] == StateType.PENDING.value
                and before[1] is not None
            )
        self._set_flow_run_state(tx, run_id, state, expect)
        if state.type is StateType.SCHEDULED and not unclaim:
            return []
        row = tx.one(
            "SELECT lease_id, work_pool, deployment, blocked_on, lease_expires FROM flow_runs"
            " WHERE id = :id",
            {"id": run_id},
        )
        if row is None or (row[0] is None and row[2] is None and not row[3]):
            return []  # a run of no deployment: nothing was held
        lease_id, pool, deployment, blocked_on, lease_expires = row
        wake: list[WakeTarget] = []
        if state.is_final or unclaim:
            tx.execute(
                "UPDATE flow_runs SET lease_id = NULL, lease_expires = NULL, blocked_on = ''"
                + (", worker_id = NULL" if unclaim else "")
                + " WHERE id = :id",
                {"id": run_id},
            )
            if lease_id is not None:
                _, released = self.release_slots(lease_id)
                wake.extend(released)
            if deployment is not None and (lease_id is not None or lease_expires is not None):
                wake.extend(self._claimers(tx, pool, time.time()))
        elif blocked_on:
            tx.execute("UPDATE flow_runs SET blocked_on = '' WHERE id = :id", {"id": run_id})
        return wake

    def set_flow_run_state_releasing(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> tuple[FlowRun, list[WakeTarget]]:
        """Move a flow run to ``state``; a final state releases what its claim took."""
        with self.db.write() as tx:
            wake = self._finish_run(tx, run_id, state, expect)
            row = tx.one(f"SELECT {_FLOW_COLUMNS} FROM flow_runs WHERE id = :id", {"id": run_id})
        assert row is not None
        return _flow_run(row), wake

    # -- creating runs ---------------------------------------------------------------
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
        now = time.time()
        with self.db.write() as tx:
            run = self._insert_run(
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
            wake = self._claimers(tx, work_pool, now) if run and expected_start_time <= now else []
        return run, wake

    def _insert_run(
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
        state = Scheduled(timestamp=datetime.fromtimestamp(now, UTC))
        created = tx.rowcount(
            "INSERT INTO flow_runs (id, name, flow_name, deployment, parameters, tags,"
            " state_type, state_name, state_message, state_timestamp, created,"
            " expected_start_time, run_count, priority, work_pool, work_queue, scheduled_slot,"
            " concurrency_key) VALUES (:id, :name, :flow, :dep, :params, :tags, :st, :sn, NULL,"
            " :now, :now, :expected, 0, :priority, :pool, :queue, :slot, :key)"
            " ON CONFLICT (deployment, scheduled_slot) DO NOTHING",
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
        self._insert_states(tx, "flow", [(run_id, state)])
        row = tx.one(f"SELECT {_FLOW_COLUMNS} FROM flow_runs WHERE id = :id", {"id": run_id})
        assert row is not None
        return _flow_run(row)

    # -- the scheduler -----------------------------------------------------------------
    def schedule_runs(
        self, *, horizon_seconds: float, max_runs: int, now: float | None = None
    ) -> tuple[int, list[WakeTarget]]:
        """Create the runs of every active schedule due within the horizon, idempotently.

        Each run's (deployment, scheduled time) is unique in the store, so any
        number of schedulers, restarted any number of times, create each run once.
        """
        now = time.time() if now is None else now
        after = datetime.fromtimestamp(now, UTC)
        until = datetime.fromtimestamp(now + horizon_seconds, UTC)
        with self.db.read() as tx:
            rows = tx.execute(
                "SELECT d.id, s.schedule FROM deployments d JOIN deployment_schedules s"
                " ON s.deployment_id = d.id WHERE d.paused = :f AND s.active = :t"
                " ORDER BY d.id, s.position",
                {"f": False, "t": True},
            )
        times: dict[str, set[float]] = {}
        for dep_id, raw in rows:
            try:
                schedule = schedule_from_dict(json.loads(raw))
            except (HeadwayError, ValueError):
                continue  # written by a newer version, or damaged: skip, never crash
            for t in next_times(schedule, after, max_runs, until):
                times.setdefault(dep_id, set()).add(t.timestamp())
        created = 0
        wake: list[WakeTarget] = []
        for dep_id, slots in times.items():
            with self.db.write() as tx:
                dep = tx.one(
                    "SELECT full_name, flow_name, name, parameters, tags, work_pool, work_queue,"
                    f" concurrency_key, paused FROM deployments WHERE id = :id"
                    f"{tx.dialect.for_update}",
                    {"id": dep_id},
                )
                if dep is None or bool(dep[8]):
                    continue
                full, flow, name, params_json, tags_json, pool, queue, template, _ = dep
                params = json.loads(params_json)
                key = None
                if template:
                    try:
                        key = render_key(template, params)
                    except HeadwayError:
                        key = None
                made = 0
                for ts in sorted(slots)[:max_runs]:
                    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d-%H%M%S")
                    run = self._insert_run(
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
                    wake.extend(self._claimers(tx, pool, now))
                created += made
        return created, wake

    def mark_late_runs(self, late_after_seconds: float, *, now: float | None = None) -> int:
        """Rename deployment runs not started ``late_after_seconds`` after their time Late."""
        now = time.time() if now is None else now
        with self.db.write() as tx:
            ids = [
                r[0]
                for r in tx.execute(
                    "SELECT id FROM flow_runs WHERE state_type = 'SCHEDULED'"
                    " AND state_name = 'Scheduled' AND expected_start_time < :cut"
                    " AND deployment IS NOT NULL ORDER BY expected_start_time LIMIT 500",
                    {"cut": now - late_after_seconds},
                )
            ]
            for run_id in ids:
                self._set_flow_run_state(
                    tx,
                    run_id,
                    Scheduled(
                        LATE,
                        message=f"not started {late_after_seconds:g}s after its scheduled time",
                    ),
                    _SCHEDULED,
                )
        return len(ids)

    # -- leases --------------------------------------------------------------------
    def _crash_expired(self, tx: Tx, now: float) -> list[WakeTarget]:
        rows = tx.execute(
            # Ordered by the indexed column: an index walk from the oldest lease
            # whatever the planner's statistics say (most runs have none).
            "SELECT id, state_type FROM flow_runs WHERE lease_expires < :now"
            " ORDER BY lease_expires LIMIT 200",
            {"now": now},
        )
        wake: list[WakeTarget] = []
        for run_id, state_type in rows:
            if state_type == StateType.CANCELLING.value:
                state = Cancelled(message="cancelled; its worker stopped renewing the run's lease")
            else:
                state = Crashed(
                    message="its worker stopped renewing the run's lease (worker died or lost"
                    " the store)"
                )
            try:
                wake.extend(self._finish_run(tx, run_id, state, None))
            except ConflictError:
                tx.execute(
                    "UPDATE flow_runs SET lease_expires = NULL WHERE id = :id", {"id": run_id}
                )
            self._event(
                tx, now, "flow_run.lease_expired", "", None, state.type.value, run_id=run_id
            )
        return wake

    def sweep_runs(self, *, now: float | None = None) -> tuple[int, list[WakeTarget]]:
        """End the runs whose lease expired (CRASHED, or CANCELLED if being cancelled)."""
        now = time.time() if now is None else now
        with self.db.read() as tx:
            due = tx.one(
                "SELECT 1 FROM flow_runs WHERE lease_expires < :now ORDER BY lease_expires LIMIT 1",
                {"now": now},
            )
        if due is None:
            return 0, []
        with self.db.write() as tx:
            wake = self._crash_expired(tx, now)
        return len(wake), wake

    def heartbeat_worker(
        self, worker_id: str, run_ids: Sequence[str], lease_seconds: float
    ) -> HeartbeatResult:
        """Renew a worker and the leases of its runs; say which it lost and which to cancel."""
        now = time.time()
        with self.db.write() as tx:
            tx.execute(
                "UPDATE workers SET last_heartbeat = :now WHERE id = :id",
                {"now": now, "id": worker_id},
            )
            keep: dict[str, str] = {}
            leases: list[str] = []
            ids = list(dict.fromkeys(run_ids))
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                params: dict[str, Any] = {"w": worker_id}
                marks = _marks("r", chunk, params)
                for run_id, state_type, lease_id in tx.execute(
                    f"SELECT id, state_type, lease_id FROM flow_runs WHERE id IN ({marks})"
                    " AND worker_id = :w AND lease_expires IS NOT NULL",
                    params,
                ):
                    keep[run_id] = state_type
                    if lease_id is not None:
                        leases.append(lease_id)
            kept = list(keep)
            for start in range(0, len(kept), 500):
                chunk = kept[start : start + 500]
                params = {"e": now + lease_seconds}
                marks = _marks("r", chunk, params)
                tx.execute(f"UPDATE flow_runs SET lease_expires = :e WHERE id IN ({marks})", params)
            if leases:
                self.renew_leases(leases, lease_seconds)
        return HeartbeatResult(
            lost=tuple(r for r in ids if r not in keep),
            cancelling=tuple(r for r, s in keep.items() if s == StateType.CANCELLING.value),
        )

    # -- cancelling ----------------------------------------------------------------
    def cancel_flow_run(self, run_id: str, message: str) -> tuple[FlowRun, list[WakeTarget]]:
        """Cancel a run: at once if nothing runs it, else CANCELLING for its worker to stop."""
        with self.db.write() as tx:
            row = tx.one(
                "SELECT state_type, worker_id FROM flow_runs WHERE id = :id"
                + tx.dialect.for_update,
                {"id": run_id},
            )
            if row is None:
                raise ObjectNotFound(f"no flow run with id {run_id}")
            current = StateType(row[0])
            wake: list[WakeTarget] = []
            if current in (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED,
                           StateType.CANCELLED):  # fmt: skip
                raise ConflictError(f"flow run {run_id} already ended {current.value}")
            if current is StateType.CANCELLING:
                wake = self._worker_targets(tx, [row[1]])
            elif current is StateType.SCHEDULED or (
                current in (StateType.PENDING, StateType.PAUSED) and row[1] is None
            ):
                wake = self._finish_run(tx, run_id, Cancelled(message=message), None)
            else:
                self._set_flow_run_state(tx, run_id, Cancelling(message=message), None)
                wake = self._worker_targets(tx, [row[1]])
            out = tx.one(f"SELECT {_FLOW_COLUMNS} FROM flow_runs WHERE id = :id", {"id": run_id})
        assert out is not None
        return _flow_run(out), wake

    # -- claiming ------------------------------------------------------------------
    def claim_flow_runs(
        self,
        *,
        worker_id: str,
        pool: str | None,
        queues: Sequence[str] | None = None,
        deployments: Sequence[str] | None = None,
        limit: int,
        process: ProcessInfo,
        lease_seconds: float,
    ) -> ClaimResult:
        """Claim up to ``limit`` due runs of ``pool`` (or, with no pool, of ``deployments``)."""
        now = time.time()
        with self.db.write() as tx:
            # Runs of dead workers are ended here too (no service needed), at most
            # every quarter second per process: claims may come much faster.
            wake: list[WakeTarget] = []
            if now >= self.__dict__.get("_next_claim_sweep", 0.0):
                self.__dict__["_next_claim_sweep"] = now + _CLAIM_SWEEP_EVERY
                wake = self._crash_expired(tx, now)
            scope = self._claim_scope(tx, pool, queues, deployments)
            if scope is None:
                return ClaimResult([], wake, None)
            claimed = self._claim(tx, scope, worker_id, limit, process, lease_seconds, now, wake)
            next_due = self._next_due(tx, scope, now)
            runs: list[ClaimedRun] = []
            for run_id, entrypoint, lease_id in claimed:
                row = tx.one(
                    f"SELECT {_FLOW_COLUMNS} FROM flow_runs WHERE id = :id", {"id": run_id}
                )
                assert row is not None
                runs.append(ClaimedRun(_flow_run(row), entrypoint, lease_id, lease_seconds))
        return ClaimResult(runs, wake, next_due)

    def _claim_scope(
        self,
        tx: Tx,
        pool: str | None,
        queues: Sequence[str] | None,
        deployments: Sequence[str] | None,
    ) -> _Scope | None:
        if pool is None:
            names = sorted(set(deployments or ()))
            if not names:
                return None
            params: dict[str, Any] = {}
            marks = _marks("d", names, params)
            # Lock the served deployments: their claims are serialised, like a pool's.
            tx.execute(
                f"SELECT id FROM deployments WHERE full_name IN ({marks}) ORDER BY full_name"
                + tx.dialect.for_update,
                params,
            )
            return _Scope(None, [], names)
        row = self._pool_row(tx, pool, lock=True)
        if bool(row[2]):
            return None  # paused
        rows = tx.execute(
            "SELECT name, priority, paused FROM work_queues WHERE pool = :p ORDER BY name",
            {"p": pool},
        )
        known = {r[0]: (int(r[1]), bool(r[2])) for r in rows}
        wanted = list(dict.fromkeys(queues)) if queues else sorted(known)
        unknown = [q for q in wanted if q not in known]
        if unknown:
            raise ObjectNotFound(
                f"work pool {pool!r} has no queue named {unknown[0]!r};"
                f" its queues: {', '.join(sorted(known))}"
            )
        eligible = [(q, known[q][0]) for q in wanted if not known[q][1]]
        if not eligible:
            return None
        return _Scope(pool, eligible, [])

    def _claim(
        self,
        tx: Tx,
        scope: _Scope,
        worker_id: str,
        limit: int,
        process: ProcessInfo,
        lease_seconds: float,
        now: float,
        wake: list[WakeTarget],
    ) -> list[tuple[str, str | None, str | None]]:
        pool = scope.pool
        fixed = [pool_limit_name(pool)] if pool else []
        fixed += [queue_limit_name(pool, q) for q, _ in scope.queues] if pool else []
        room = _room(tx, fixed, now)
        if pool and room[pool_limit_name(pool)] < 1:
            return []
        candidates = self._fresh_candidates(tx, scope, room, limit, now)
        candidates += self._blocked_candidates(tx, scope, limit, now)
        if not candidates:
            return []
        infos = self._deployment_infos(tx, {c.deployment for c in candidates if c.deployment})
        dep_limits: dict[str, int] = {}
        for c in candidates:
            info = infos.get(c.deployment or "")
            if c.deployment is None or info is None or info.limit is None:
                continue
            key = None
            if info.key_template:
                key = c.key
                if key is None:
                    try:
                        key = render_key(info.key_template, json.loads(c.parameters))
                    except HeadwayError:
                        key = None
                c.key = key
            c.limit = deployment_limit_name(c.deployment, key)
            dep_limits[c.limit] = info.limit
        self._ensure_limits(tx, dep_limits, now)
        room.update(_room(tx, sorted(dep_limits), now))
        round_robin_order(candidates, self._last_served(tx, candidates))
        candidates.sort(key=lambda c: c.order)
        queue_full: set[str] = set()
        claimed: list[tuple[str, str | None, str | None]] = []
        seen: set[str] = set()
        for c in candidates:
            if len(claimed) >= limit:
                break
            if c.id in seen:
                continue
            seen.add(c.id)
            if c.queue in queue_full:
                continue
            locked = tx.one(
                f"SELECT state_type FROM flow_runs WHERE id = :id{tx.dialect.for_update}",
                {"id": c.id},
            )
            if locked is None or locked[0] != StateType.SCHEDULED.value:
                continue
            names = list(fixed[:1])
            if pool and c.queue is not None:
                names.append(queue_limit_name(pool, c.queue))
            if c.limit is not None:
                names.append(c.limit)
            blocked = [n for n in names if room.get(n, float("inf")) < 1]
            lease_id: str | None = None
            if not blocked and any(room.get(n, float("inf")) != float("inf") for n in names):
                attempt = self.acquire_slots(
                    sorted(set(names)),
                    1,
                    mode="concurrency",
                    priority=c.priority,
                    holder_kind="flow_run",
                    holder_id=c.id,
                    process=process,
                    lease_seconds=lease_seconds,
                    waiter_id=uuid.uuid4().hex,
                    new_waiter=True,
                    may_queue=False,
                    wake_address=None,
                )
                wake.extend(attempt.wake)
                if attempt.grant is not None:
                    lease_id = attempt.grant.lease_id
                else:
                    reasons = " ".join(attempt.wait.reasons if attempt.wait else ())
                    blocked = [n for n in names if repr(n) in reasons] or names[:1]
                    for n in blocked:
                        room[n] = 0.0
            if blocked:
                if pool and pool_limit_name(pool) in blocked:
                    self._await(tx, c, pool_limit_name(pool), None, room)
                    break
                if pool and c.queue is not None and queue_limit_name(pool, c.queue) in blocked:
                    self._await(tx, c, queue_limit_name(pool, c.queue), None, room)
                    queue_full.add(c.queue)
                    continue
                info = infos[c.deployment or ""]
                assert c.limit is not None
                wake.extend(self._collide(tx, c, info, room, now))
                continue
            self._set_flow_run_state(tx, c.id, Pending(), _SCHEDULED)
            tx.execute(
                "UPDATE flow_runs SET lease_id = :lease, lease_expires = :e, worker_id = :w,"
                " blocked_on = '', concurrency_key = :key WHERE id = :id",
                {"lease": lease_id, "e": now + lease_seconds, "w": worker_id, "key": c.key,
                 "id": c.id},
            )  # fmt: skip
            for n in names:
                room[n] = room.get(n, float("inf")) - 1
            if c.key is not None and c.deployment is not None:
                self._served(tx, c.deployment, c.key, now)
            info_entry = infos.get(c.deployment or "")
            claimed.append((c.id, info_entry.entrypoint if info_entry else None, lease_id))
            # Claim latency: how long the run was due before a worker took it.
            latency = max(0.0, now - c.expected)
            self._event(tx, now, "flow_run.claimed", c.limit or "", 1, f"worker={worker_id}",
                        run_id=c.id, seconds=latency)  # fmt: skip
            self._observe(tx, CLAIM_LATENCY, [pool or ""], latency)
        return claimed

    def _fresh_candidates(
        self, tx: Tx, scope: _Scope, room: dict[str, float], limit: int, now: float
    ) -> list[_Candidate]:
        window = max(CLAIM_WINDOW, limit * 4)
        out: list[_Candidate] = []
        if scope.pool is None:
            params: dict[str, Any] = {"now": now, "n": window}
            marks = _marks("d", scope.deployments, params)
            rows = tx.execute(
                f"SELECT {_CANDIDATE_COLUMNS} FROM flow_runs WHERE work_pool IS NULL"
                " AND work_queue IS NULL AND state_type = 'SCHEDULED' AND blocked_on = ''"
                f" AND expected_start_time <= :now AND deployment IN ({marks})"
                " AND lease_expires IS NULL"
                " ORDER BY expected_start_time LIMIT :n",
                params,
            )
            return [_Candidate.of(r, 0) for r in rows]
        for queue, priority in scope.queues:
            if room[queue_limit_name(scope.pool, queue)] < 1:
                continue
            rows = tx.execute(
                f"SELECT {_CANDIDATE_COLUMNS} FROM flow_runs WHERE work_pool = :p"
                " AND work_queue = :q AND state_type = 'SCHEDULED' AND blocked_on = ''"
                " AND expected_start_time <= :now AND lease_expires IS NULL"
                " ORDER BY expected_start_time LIMIT :n",
                {"p": scope.pool, "q": queue, "now": now, "n": window},
            )
            out.extend(_Candidate.of(r, priority) for r in rows)
        return out

    def _blocked_candidates(
        self, tx: Tx, scope: _Scope, limit: int, now: float
    ) -> list[_Candidate]:
        # A skip scan: one index probe per distinct limit waited on, however many wait.
        groups = [
            r[0]
            for r in tx.execute(
                "WITH RECURSIVE g(name) AS (SELECT MIN(blocked_on) FROM flow_runs"
                " WHERE blocked_on > '' UNION ALL SELECT (SELECT MIN(f.blocked_on)"
                " FROM flow_runs f WHERE f.blocked_on > g.name) FROM g WHERE g.name IS NOT NULL)"
                " SELECT name FROM g WHERE name IS NOT NULL"
            )
        ]
        if not groups:
            return []
        room = _room(tx, groups, now)
        queue_priority = dict(scope.queues)
        out: list[_Candidate] = []
        for group in groups:
            free = room[group]
            if free < 1:
                continue
            take = int(min(free, max(limit, 1))) if free != float("inf") else max(limit, 1)
            out.extend(
                c
                for c in self._group_heads(tx, group, take)
                if (scope.pool is None and c.pool is None and c.deployment in scope.deployments)
                or (scope.pool is not None and c.pool == scope.pool and c.queue in queue_priority)
            )
        for c in out:
            c.queue_priority = queue_priority.get(c.queue or "", 0)
        return out

    def _group_heads(self, tx: Tx, group: str, take: int) -> list[_Candidate]:
        """The first runs waiting on ``group``: highest priority first, then FIFO.

        One index probe per priority level present (a skip scan down the
        priorities), so the cost does not grow with the number waiting.
        """
        heads: list[_Candidate] = []
        level = tx.one("SELECT MAX(priority) FROM flow_runs WHERE blocked_on = :b", {"b": group})
        while level is not None and level[0] is not None and len(heads) < take:
            rows = tx.execute(
                f"SELECT {_CANDIDATE_COLUMNS} FROM flow_runs WHERE blocked_on = :b"
                " AND priority = :p AND state_type = 'SCHEDULED' AND lease_expires IS NULL"
                " ORDER BY expected_start_time LIMIT :n",
                {"b": group, "p": int(level[0]), "n": take - len(heads)},
            )
            heads.extend(_Candidate.of(r, 0) for r in rows)
            level = tx.one(
                "SELECT MAX(priority) FROM flow_runs WHERE blocked_on = :b AND priority < :p",
                {"b": group, "p": int(level[0])},
            )
        return heads

    def _deployment_infos(self, tx: Tx, names: set[str]) -> dict[str, _DeploymentInfo]:
        if not names:
            return {}
        params: dict[str, Any] = {}
        marks = _marks("d", sorted(names), params)
        return {
            r[0]: _DeploymentInfo(None if r[1] is None else int(r[1]), r[2], r[3], r[4])
            for r in tx.execute(
                "SELECT full_name, concurrency_limit, collision_strategy, concurrency_key,"
                f" entrypoint FROM deployments WHERE full_name IN ({marks})",
                params,
            )
        }

    def _ensure_limits(self, tx: Tx, wanted: Mapping[str, int], now: float) -> None:
        """Create the per-key limits of keyed deployments on first use."""
        if not wanted:
            return
        params: dict[str, Any] = {}
        marks = _marks("n", sorted(wanted), params)
        have = {
            r[0] for r in tx.execute(f"SELECT name FROM limits WHERE name IN ({marks})", params)
        }
        for name in sorted(set(wanted) - have):
            try:
                self.create_limit(name, wanted[name])
            except HeadwayError:
                pass  # created meanwhile by another transaction: fine

    def _last_served(self, tx: Tx, candidates: Sequence[_Candidate]) -> dict[str, float]:
        deps = sorted({c.deployment for c in candidates if c.key is not None and c.deployment})
        if not deps:
            return {}
        params: dict[str, Any] = {}
        marks = _marks("d", deps, params)
        return {
            f"{r[0]}\x00{r[1]}": float(r[2])
            for r in tx.execute(
                "SELECT deployment, key, last_claimed FROM deployment_keys"
                f" WHERE deployment IN ({marks})",
                params,
            )
        }

    def _served(self, tx: Tx, deployment: str, key: str, now: float) -> None:
        tx.execute(
            "INSERT INTO deployment_keys (deployment, key, last_claimed) VALUES (:d, :k, :now)"
            " ON CONFLICT (deployment, key) DO UPDATE SET last_claimed = :now",
            {"d": deployment, "k": key, "now": now},
        )

    def _await(
        self,
        tx: Tx,
        c: _Candidate,
        limit_name: str,
        blocked_on: str | None,
        room: Mapping[str, float],
    ) -> None:
        """Leave a run SCHEDULED/AwaitingConcurrencySlot, saying which limit it waits on."""
        blocked_on = blocked_on or ""
        if c.state_name == AWAITING_CONCURRENCY_SLOT and (c.blocked_on or "") == blocked_on:
            return
        self._set_flow_run_state(
            tx,
            c.id,
            Scheduled(
                AWAITING_CONCURRENCY_SLOT, message=f"waiting for a slot of limit {limit_name!r}"
            ),
            _SCHEDULED,
        )
        if blocked_on != (c.blocked_on or ""):
            tx.execute(
                "UPDATE flow_runs SET blocked_on = :b, concurrency_key = :k WHERE id = :id",
                {"b": blocked_on, "k": c.key, "id": c.id},
            )

    def _collide(
        self,
        tx: Tx,
        c: _Candidate,
        info: _DeploymentInfo,
        room: Mapping[str, float],
        now: float,
    ) -> list[WakeTarget]:
        """Apply the deployment's collision strategy to a run that found its limit full."""
        assert c.limit is not None and c.deployment is not None
        limit_text = f"deployment concurrency limit {c.limit!r} ({info.limit})"
        if info.strategy == CANCEL_NEW:
            self._event(tx, now, "flow_run.cancel_new", c.limit, 1, "", run_id=c.id)
            return self._finish_run(
                tx,
                c.id,
                Cancelled(message=f"{limit_text} is full; collision strategy CANCEL_NEW"),
                _SCHEDULED,
            )
        wake: list[WakeTarget] = []
        if info.strategy == CANCEL_IN_PROGRESS:
            params: dict[str, Any] = {"d": c.deployment}
            key_clause = ""
            if c.key is not None:
                key_clause, params["k"] = " AND concurrency_key = :k", c.key
            holders = tx.execute(
                "SELECT id, worker_id FROM flow_runs WHERE deployment = :d AND state_type IN"
                f" ('PENDING', 'RUNNING', 'PAUSED'){key_clause} ORDER BY created",
                params,
            )
            message = f"superseded by newer run {c.id} (CANCEL_IN_PROGRESS on {c.limit!r})"
            for run_id, _ in holders:
                self._set_flow_run_state(tx, run_id, Cancelling(message=message), None)
                self._event(tx, now, "flow_run.superseded", c.limit, None, c.id, run_id=run_id)
            wake.extend(self._worker_targets(tx, [h[1] for h in holders]))
            older = tx.execute(
                "SELECT id FROM flow_runs WHERE blocked_on = :b AND state_type = 'SCHEDULED'"
                " AND id <> :id AND (expected_start_time < :t OR (expected_start_time = :t"
                " AND created <= :c))",
                {"b": c.limit, "id": c.id, "t": c.expected, "c": c.created},
            )
            for (run_id,) in older:
                wake.extend(self._finish_run(tx, run_id, Cancelled(message=message), _SCHEDULED))
        self._await(tx, c, c.limit, c.limit, room)
        return wake

    def _next_due(self, tx: Tx, scope: _Scope, now: float) -> float | None:
        if scope.pool is None:
            params: dict[str, Any] = {"now": now}
            marks = _marks("d", scope.deployments, params)
            row = tx.one(
                "SELECT expected_start_time FROM flow_runs WHERE work_pool IS NULL"
                " AND work_queue IS NULL AND state_type = 'SCHEDULED' AND blocked_on = ''"
                f" AND expected_start_time > :now AND deployment IN ({marks})"
                " ORDER BY expected_start_time LIMIT 1",
                params,
            )
            return None if row is None or row[0] is None else float(row[0])
        best: float | None = None
        for queue, _ in scope.queues:
            # ORDER BY ... LIMIT 1 rather than MIN: the claim index walked in order,
            # whatever the planner's statistics (a fresh backlog has none).
            row = tx.one(
                "SELECT expected_start_time FROM flow_runs WHERE work_pool = :p"
                " AND work_queue = :q AND state_type = 'SCHEDULED' AND blocked_on = ''"
                " AND expected_start_time > :now ORDER BY expected_start_time LIMIT 1",
                {"p": scope.pool, "q": queue, "now": now},
            )
            if row is not None and row[0] is not None:
                best = float(row[0]) if best is None else min(best, float(row[0]))
        return best


@dataclass(frozen=True)
class _Scope:
    """What one claim may take: a pool's eligible queues, or served deployments."""

    pool: str | None
    queues: list[tuple[str, int]]
    deployments: list[str]


__all__ = ["CLAIM_WINDOW", "ClaimResult", "ClaimStore", "round_robin_order"]
