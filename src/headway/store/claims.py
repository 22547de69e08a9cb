"""Claiming deployment runs: which due runs a worker takes, and what the others do.

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

Leases, endings and cancellation are in :mod:`headway.store.run_leases`;
creating runs (and the scheduler) in :mod:`headway.store.scheduling`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from headway.core.claiming import (
    Candidate,
    ClaimResult,
    collision,
    round_robin_order,
)
from headway.core.clock import Clock
from headway.core.deployments import (
    deployment_limit_name,
    pool_limit_name,
    queue_limit_name,
    render_key,
)
from headway.core.events import CLAIM_LATENCY
from headway.core.limits import ProcessInfo, WakeTarget
from headway.core.models import ClaimedRun
from headway.core.states import (
    AWAITING_CONCURRENCY_SLOT,
    Cancelled,
    Cancelling,
    Pending,
    Scheduled,
    StateType,
)
from headway.exceptions import HeadwayError, ObjectNotFound
from headway.store.claim_reads import (
    DeploymentInfo,
    Scope,
    blocked_candidates,
    deployment_infos,
    fresh_candidates,
    last_served,
    next_due_at,
    room_on,
)
from headway.store.db import Database, Tx
from headway.store.events import Events
from headway.store.pools import Pools
from headway.store.queries import deployments as q
from headway.store.run_leases import RunLeases
from headway.store.run_rows import flow_run_of
from headway.store.runs import Runs
from headway.store.slots import Limits, Slots
from headway.store.sql import in_list

_SCHEDULED = frozenset({StateType.SCHEDULED})


class Claims:
    """Claiming due deployment runs for a worker, in one transaction per claim."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        runs: Runs,
        run_leases: RunLeases,
        pools: Pools,
        limits: Limits,
        slots: Slots,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs
        self.run_leases = run_leases
        self.pools = pools
        self.limits = limits
        self.slots = slots

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
        now = self.clock.now()
        # Runs of dead workers end here first (no service needed): a slot their
        # expired lease gave back is never handed on while they still look alive.
        # The sweep isolates a damaged run (skipped, reported) so that it cannot
        # fail every claim; the claim's own pass then ends only runs that expired
        # in between.
        _, wake = self.run_leases.sweep_runs(now=now)
        with self.db.write() as tx:
            wake += self.run_leases.crash_expired(tx, self.run_leases.expired_runs(tx, now), now)[1]
            scope = self._claim_scope(tx, pool, queues, deployments)
            if scope is None:
                return ClaimResult([], wake, None)
            claimed = self._claim(tx, scope, worker_id, limit, process, lease_seconds, now, wake)
            next_due = next_due_at(tx, scope, now)
            runs: list[ClaimedRun] = []
            for run_id, entrypoint, lease_id in claimed:
                row = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": run_id})
                assert row is not None
                runs.append(ClaimedRun(flow_run_of(row), entrypoint, lease_id, lease_seconds))
        return ClaimResult(runs, wake, next_due)

    def _claim_scope(
        self,
        tx: Tx,
        pool: str | None,
        queues: Sequence[str] | None,
        deployments: Sequence[str] | None,
    ) -> Scope | None:
        if pool is None:
            names = sorted(set(deployments or ()))
            if not names:
                return None
            params: dict[str, Any] = {}
            marks = in_list("d", names, params)
            # Lock the served deployments: their claims are serialised, like a pool's.
            tx.execute(q.lock_deployments(marks) + tx.dialect.for_update, params)
            return Scope(None, [], names)
        row = self.pools.pool_row(tx, pool, lock=True)
        if bool(row[2]):
            return None  # paused
        rows = tx.execute(q.SELECT_QUEUES_TO_CLAIM, {"p": pool})
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
        return Scope(pool, eligible, [])

    def _claim(
        self,
        tx: Tx,
        scope: Scope,
        worker_id: str,
        limit: int,
        process: ProcessInfo,
        lease_seconds: float,
        now: float,
        wake: list[WakeTarget],
    ) -> list[tuple[str, str | None, str | None]]:
        pool = scope.pool
        # No process start time: the slot engine cannot judge the holder dead by its
        # pid (a worker's pid would free the slot before the run is marked CRASHED).
        holder = ProcessInfo(pid=process.pid, host=process.host, node=process.node)
        fixed = [pool_limit_name(pool)] if pool else []
        fixed += [queue_limit_name(pool, q) for q, _ in scope.queues] if pool else []
        room = room_on(tx, fixed, now)
        if pool and room[pool_limit_name(pool)] < 1:
            return []
        candidates = fresh_candidates(tx, scope, room, limit, now)
        candidates += blocked_candidates(tx, scope, limit, now)
        if not candidates:
            return []
        infos = deployment_infos(tx, {c.deployment for c in candidates if c.deployment})
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
        room.update(room_on(tx, sorted(dep_limits), now))
        round_robin_order(candidates, last_served(tx, candidates))
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
            locked = tx.one(q.SELECT_RUN_STATE_TYPE + tx.dialect.for_update, {"id": c.id})
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
                attempt = self.slots.acquire_slots(
                    sorted(set(names)),
                    1,
                    mode="concurrency",
                    priority=c.priority,
                    holder_kind="flow_run",
                    holder_id=c.id,
                    # Expires with the run lease (renewed together): the run is
                    # ended CRASHED before its slot can be handed on.
                    process=holder,
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
                if self.limits.limit_values(tx, [c.limit], now).get(c.limit) == 0:
                    # Set to 0 by hand (a kill switch): the run waits, whatever the
                    # strategy; nothing is cancelled, as in Prefect.
                    self._await(tx, c, c.limit, c.limit, room)
                    continue
                wake.extend(self._collide(tx, c, info, room, now))
                continue
            self.runs.set_state_in(tx, c.id, Pending(), _SCHEDULED)
            tx.execute(
                q.MARK_RUN_CLAIMED,
                {"lease": lease_id, "e": now + lease_seconds, "w": worker_id, "key": c.key,
                 "id": c.id, "now": now},
            )  # fmt: skip
            for n in names:
                room[n] = room.get(n, float("inf")) - 1
            if c.key is not None and c.deployment is not None:
                self._served(tx, c.deployment, c.key, now)
            info_entry = infos.get(c.deployment or "")
            claimed.append((c.id, info_entry.entrypoint if info_entry else None, lease_id))
            # Claim latency: how long the run was due before a worker took it.
            latency = max(0.0, now - c.expected)
            self.events.event(tx, now, "flow_run.claimed", c.limit or "", 1, f"worker={worker_id}",
                        run_id=c.id, seconds=latency)  # fmt: skip
            self.events.observe(tx, CLAIM_LATENCY, [pool or ""], latency)
        return claimed

    def _ensure_limits(self, tx: Tx, wanted: Mapping[str, int], now: float) -> None:
        """Create the per-key limits of keyed deployments on first use."""
        if not wanted:
            return
        params: dict[str, Any] = {}
        marks = in_list("n", sorted(wanted), params)
        have = {r[0] for r in tx.execute(q.select_limit_names(marks), params)}
        for name in sorted(set(wanted) - have):
            try:
                self.limits.create_limit(name, wanted[name])
            except HeadwayError:
                pass  # created meanwhile by another transaction: fine

    def _served(self, tx: Tx, deployment: str, key: str, now: float) -> None:
        tx.execute(q.UPSERT_DEPLOYMENT_KEY_SERVED, {"d": deployment, "k": key, "now": now})

    def _await(
        self,
        tx: Tx,
        c: Candidate,
        limit_name: str,
        blocked_on: str | None,
        room: Mapping[str, float],
    ) -> None:
        """Leave a run SCHEDULED/AwaitingConcurrencySlot, saying which limit it waits on."""
        blocked_on = blocked_on or ""
        if c.state_name == AWAITING_CONCURRENCY_SLOT and (c.blocked_on or "") == blocked_on:
            return
        self.runs.set_state_in(
            tx,
            c.id,
            Scheduled(
                AWAITING_CONCURRENCY_SLOT, message=f"waiting for a slot of limit {limit_name!r}"
            ),
            _SCHEDULED,
        )
        if blocked_on != (c.blocked_on or ""):
            tx.execute(
                q.SET_RUN_BLOCKED_ON,
                {"b": blocked_on, "k": c.key, "id": c.id, "now": self.clock.now()},
            )

    def _collide(
        self,
        tx: Tx,
        c: Candidate,
        info: DeploymentInfo,
        room: Mapping[str, float],
        now: float,
    ) -> list[WakeTarget]:
        """Apply the deployment's collision strategy (``core.claiming``) to a run that found
        its limit full."""
        assert c.limit is not None and c.deployment is not None
        outcome = collision(info.strategy, c.id, c.limit, info.limit)
        if outcome.cancel_new is not None:
            self.events.event(tx, now, "flow_run.cancel_new", c.limit, 1, "", run_id=c.id)
            return self.run_leases.finish_run(
                tx, c.id, Cancelled(message=outcome.cancel_new), _SCHEDULED
            )
        wake: list[WakeTarget] = []
        if outcome.supersede is not None:
            params: dict[str, Any] = {"d": c.deployment}
            query = q.SELECT_ACTIVE_RUNS_OF_DEPLOYMENT
            if c.key is not None:
                query, params["k"] = q.SELECT_ACTIVE_RUNS_OF_DEPLOYMENT_KEY, c.key
            holders = tx.execute(query, params)
            message = outcome.supersede
            for run_id, _ in holders:
                wake += self.runs.set_state_in(tx, run_id, Cancelling(message=message), None)
                self.events.event(
                    tx, now, "flow_run.superseded", c.limit, None, c.id, run_id=run_id
                )
            wake.extend(self.run_leases.worker_targets(tx, [h[1] for h in holders]))
            older = tx.execute(
                q.SELECT_RUNS_WAITING_BEFORE,
                {"b": c.limit, "id": c.id, "t": c.expected, "c": c.created},
            )
            for (run_id,) in older:
                wake.extend(
                    self.run_leases.finish_run(tx, run_id, Cancelled(message=message), _SCHEDULED)
                )
        self._await(tx, c, c.limit, c.limit, room)
        return wake


__all__ = ["Claims"]
