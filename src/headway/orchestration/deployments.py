"""The Orchestrator's deployment operations: validate, store, wake whoever waits.

Mixed into :class:`headway.orchestrator.Orchestrator`, so the embedded client
(the Orchestrator itself) and the HTTP server behave the same.
Every input is validated here (names, schedules, parameters against the flow's
signature, limits, strategies, key templates) before one store transaction
writes anything; the store returns who to wake (workers of a pool when a slot
frees or a run becomes due, a worker whose run is being cancelled) and the
wake-ups are sent after the commit.

Claiming can wait (``wait`` seconds, a long poll): the claimer listens under
``claim:<worker id>`` and is woken by the release that frees a slot, by a new
due run, or when the next scheduled run falls due, whichever comes first.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headway._process import current_process
from headway.core.bounds import INT32_MAX, check_finite_json, check_pid, check_time, check_whole
from headway.core.deployments import (
    DeploymentSpec,
    check_parameters,
    full_name,
    parse_entrypoint,
    render_key,
    split_full_name,
    validate_code_source,
    validate_concurrency_limit,
    validate_key_template,
    validate_object_name,
    validate_priority,
    validate_run_tags,
    validate_strategy,
)
from headway.core.limits import HOST_MAX, validate_name, validate_process
from headway.core.models import (
    ClaimedRun,
    Deployment,
    FlowRun,
    HeartbeatResult,
    Worker,
    WorkPool,
    WorkQueue,
)
from headway.core.schedules import next_times, schedule_to_dict, to_schedule
from headway.core.states import State, StateType
from headway.exceptions import ValidationError
from headway.store.run_leases import retrying

logger = logging.getLogger("headway.orchestration")

if TYPE_CHECKING:
    from headway.core.limits import ProcessInfo, WakeTarget
    from headway.core.wakeups import Wakeups
    from headway.settings import Settings
    from headway.store.store import Store

#: Runs are created this far ahead of their scheduled time (default of
#: ``HEADWAY_SCHEDULER_HORIZON_SECONDS``).
SCHEDULE_HORIZON_SECONDS = 3600.0
#: At most this many runs per deployment per scheduler pass.
SCHEDULE_MAX_RUNS = 10
#: A deployment run not started this long after its time is marked Late (default
#: of ``HEADWAY_LATE_AFTER_SECONDS``).
LATE_AFTER_SECONDS = 15.0
#: A waiting claim re-checks at least this often, in case a wake-up was lost.
CLAIM_RECHECK_SECONDS = 1.0
#: Longest a single claim call waits (the HTTP server's long-poll cap).
CLAIM_WAIT_MAX_SECONDS = 30.0


class DeploymentPolicy:
    """Deployments, schedules, pools, queues, workers, claims, cancellation."""

    store: Store
    settings: Settings

    if TYPE_CHECKING:

        @property
        def wakeups(self) -> Wakeups: ...

        def _notify(self, targets: Sequence[WakeTarget]) -> None: ...

    # -- state changes ---------------------------------------------------------------
    def _set_run_state(
        self, run_id: str, state: State, expect: frozenset[StateType] | None
    ) -> FlowRun:
        """A state change that also gives back a claimed run's slots when it ends."""
        run, wake = retrying(
            lambda: self.store.run_leases.set_flow_run_state_releasing(run_id, state, expect=expect)
        )
        self._notify(wake)
        return run

    # -- work pools ----------------------------------------------------------------
    def create_work_pool(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkPool:
        """Create a pool (with its ``default`` queue); unlimited unless a limit is given."""
        return self.store.pools.create_work_pool(
            name, concurrency_limit=concurrency_limit, description=description
        )

    def read_work_pool(self, name: str) -> WorkPool:
        """One pool with its queues, limit and run counts."""
        return self.store.pools.read_work_pool(name)

    def list_work_pools(self) -> list[WorkPool]:
        """Every pool."""
        return self.store.pools.list_work_pools()

    def update_work_pool(self, name: str, *, paused: bool | None = None) -> WorkPool:
        """Pause or resume a pool."""
        if paused is None:
            return self.store.pools.read_work_pool(name)
        pool = self.store.pools.set_work_pool_paused(name, paused)
        if not paused:
            self._wake_pool(name)
        return pool

    def set_work_pool_concurrency_limit(self, name: str, limit: int | None) -> WorkPool:
        """Set (None: clear) the pool's limit on PENDING and RUNNING runs, live."""
        pool, wake = self.store.pools.set_work_pool_limit(name, limit)
        self._notify(wake)
        return pool

    def delete_work_pool(self, name: str) -> None:
        """Delete a pool (refused while deployments use it)."""
        self._notify(self.store.pools.delete_work_pool(name))

    def _wake_pool(self, pool: str | None) -> None:
        self._notify(self.store.run_leases.pool_claimers(pool))

    # -- work queues ---------------------------------------------------------------
    def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int = 0,
        concurrency_limit: int | None = None,
    ) -> WorkQueue:
        """Create a queue in a pool (higher priority is claimed first)."""
        return self.store.pools.create_work_queue(
            pool, name, priority=priority, concurrency_limit=concurrency_limit
        )

    def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        """One queue."""
        return self.store.pools.read_work_queue(pool, name)

    def list_work_queues(self, pool: str | None = None) -> list[WorkQueue]:
        """The queues of a pool (or of every pool)."""
        return self.store.pools.list_work_queues(pool)

    def update_work_queue(
        self, pool: str, name: str, *, priority: int | None = None, paused: bool | None = None
    ) -> WorkQueue:
        """Change a queue's priority, pause or resume it."""
        queue = self.store.pools.update_work_queue(pool, name, priority=priority, paused=paused)
        if paused is False:
            self._wake_pool(pool)
        return queue

    def set_work_queue_concurrency_limit(
        self, pool: str, name: str, limit: int | None
    ) -> WorkQueue:
        """Set (None: clear) the queue's limit, live."""
        queue, wake = self.store.pools.set_work_queue_limit(pool, name, limit)
        self._notify(wake)
        return queue

    def delete_work_queue(self, pool: str, name: str) -> None:
        """Delete a queue (not ``default``; refused while deployments use it)."""
        self._notify(self.store.pools.delete_work_queue(pool, name))

    # -- deployments ---------------------------------------------------------------
    def apply_deployment(self, spec: DeploymentSpec) -> Deployment:
        """Create or update a deployment from ``spec``, validated in full first."""
        full = full_name(spec.flow_name, spec.name)
        if spec.entrypoint is not None:
            parse_entrypoint(spec.entrypoint)
        code_repository, code_ref = validate_code_source(spec.code_repository, spec.code_ref)
        if spec.work_pool is not None:
            validate_object_name(spec.work_pool, "work pool")
        if spec.work_queue is not None:
            validate_object_name(spec.work_queue, "work queue")
        if spec.work_queue is not None and spec.work_pool is None:
            raise ValidationError("a work queue needs a work pool")
        schedules: list[dict[str, Any]] = []
        now = datetime.fromtimestamp(self.store.clock.now(), UTC)
        for item in spec.schedules:
            schedule = to_schedule(item)
            # Computed before anything is written: a schedule whose times cannot be
            # computed is refused here, not found out by every scheduler pass.
            next_times(schedule, now, SCHEDULE_MAX_RUNS)
            stored = schedule_to_dict(schedule)
            if stored not in schedules:
                schedules.append(stored)
        params = dict(spec.parameters or {})
        check_finite_json(params, "parameters")
        check_finite_json(spec.parameter_schema or {}, "parameter schema")
        # Scheduled runs get exactly the deployment's parameters: they must be complete.
        _check(spec.parameter_schema, params, f"deployment {full}", complete=bool(schedules))
        limit = None
        if spec.concurrency_limit is not None:
            limit = validate_concurrency_limit(spec.concurrency_limit)
        strategy = validate_strategy(spec.collision_strategy)
        key = None
        if spec.concurrency_key is not None:
            key = validate_key_template(spec.concurrency_key, spec.parameter_schema)
            if limit is None:
                raise ValidationError("a concurrency key needs a concurrency limit")
        tags = tuple(str(t) for t in spec.tags)
        dep, wake = self.store.deployments.upsert_deployment(
            flow_name=spec.flow_name,
            name=spec.name,
            full_name=full,
            entrypoint=spec.entrypoint,
            parameters=params,
            parameter_schema=spec.parameter_schema,
            tags=tags,
            work_pool=spec.work_pool,
            work_queue=spec.work_queue,
            paused=bool(spec.paused),
            concurrency_limit=limit,
            collision_strategy=strategy,
            concurrency_key=key,
            schedules=schedules,
            description=spec.description,
            code_repository=code_repository,
            code_ref=code_ref,
        )
        self._notify(wake)
        if schedules and not spec.paused:
            self.schedule_runs()
        return dep

    def read_deployment(self, name: str) -> Deployment:
        """One deployment by ``<flow>/<name>``."""
        split_full_name(name)
        return self.store.deployments.read_deployment(name)

    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        """Deployments by name."""
        return self.store.deployments.list_deployments(work_pool=work_pool, flow_name=flow_name)

    def update_deployment(self, name: str, *, paused: bool | None = None) -> Deployment:
        """Pause (its schedules stop; runs created ahead are removed) or resume."""
        split_full_name(name)
        if paused is None:
            return self.store.deployments.read_deployment(name)
        dep = self.store.deployments.set_deployment_paused(name, paused)
        if not paused:
            self.schedule_runs()
        return dep

    def set_deployment_concurrency_limit(
        self,
        name: str,
        limit: int | None,
        *,
        collision_strategy: str | None = None,
        concurrency_key: str | None = None,
    ) -> Deployment:
        """Set (None: clear) the deployment's limit, strategy and key template, live."""
        split_full_name(name)
        value = None if limit is None else validate_concurrency_limit(limit)
        strategy = None if collision_strategy is None else validate_strategy(collision_strategy)
        key = None
        if concurrency_key is not None:
            if value is None:
                raise ValidationError("a concurrency key needs a concurrency limit")
            dep = self.store.deployments.read_deployment(name)
            key = validate_key_template(concurrency_key, dep.parameter_schema)
        dep, wake = self.store.deployments.set_deployment_concurrency(name, value, strategy, key)
        self._notify(wake)
        return dep

    def delete_deployment(self, name: str) -> None:
        """Delete a deployment; its runs not started yet are cancelled."""
        split_full_name(name)
        self._notify(self.store.deployments.delete_deployment(name))

    def create_deployment_run(
        self,
        name: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        scheduled_time: datetime | None = None,
        priority: int = 0,
        flow_run_name: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> FlowRun:
        """A new run of a deployment, due at ``scheduled_time`` (default: now).

        ``flow_run_name`` names the run (default: the deployment's name and a
        random suffix); ``tags`` are added to the deployment's, as in Prefect.
        """
        split_full_name(name)
        priority = validate_priority(priority)
        if flow_run_name is not None:
            validate_name(flow_run_name, "flow run name")
        extra_tags = validate_run_tags(tags)
        dep = self.store.deployments.read_deployment(name)
        merged = {**dep.parameters, **dict(parameters or {})}
        check_finite_json(merged, "parameters")
        _check(dep.parameter_schema, merged, f"deployment {name}", complete=True)
        key = None
        if dep.concurrency_key and dep.concurrency_limit is not None:
            key = render_key(dep.concurrency_key, merged)
        if scheduled_time is None:
            expected = self.store.clock.now()
        else:
            expected = check_time(scheduled_time, "scheduled_time").timestamp()
        run, wake = self.store.scheduling.create_deployment_run(
            full_name=name,
            flow_name=dep.flow_name,
            name=flow_run_name or f"{dep.name}-{secrets.token_hex(3)}",
            parameters=merged,
            tags=tuple(dict.fromkeys((*dep.tags, *extra_tags))),
            work_pool=dep.work_pool,
            work_queue=dep.work_queue,
            expected_start_time=expected,
            priority=priority,
            concurrency_key=key,
        )
        assert run is not None
        self._notify(wake)
        return run

    # -- runs ----------------------------------------------------------------------
    def cancel_flow_run(self, run_id: str, message: str | None = None) -> FlowRun:
        """Cancel a run: at once if not started, else its worker stops it (CANCELLING)."""
        text = message or "cancelled on request"
        run, wake = retrying(lambda: self.store.run_leases.cancel_flow_run(run_id, text))
        self._notify(wake)
        return run

    # -- workers -------------------------------------------------------------------
    def register_worker(
        self, pool: str, name: str, *, pid: int | None = None, host: str | None = None
    ) -> Worker:
        """Record a worker of ``pool`` (``""``: a ``serve()`` process) and where to wake it."""
        if pool:
            validate_object_name(pool, "work pool")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError("worker name must be 1 to 200 characters")
        if pid is not None:
            check_pid(pid, "worker pid")
        if host is not None and (not isinstance(host, str) or len(host) > HOST_MAX):
            raise ValidationError(f"worker host must be at most {HOST_MAX} characters")
        return self.store.pools.register_worker(
            pool, name, pid=pid, host=host, wake_address=self.wakeups.address
        )

    def list_workers(self, pool: str | None = None) -> list[Worker]:
        """Workers, most recently heard from first."""
        return self.store.pools.list_workers(
            pool, offline_after=max(60.0, 3 * self.settings.concurrency_lease_seconds)
        )

    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        self.store.pools.remove_worker(worker_id)

    def heartbeat_worker(self, worker_id: str, run_ids: Sequence[str]) -> HeartbeatResult:
        """Renew a worker's runs; which it lost and which it must cancel."""
        try:
            self.sweep_runs()
        except Exception as exc:  # the renewal matters more: a worker must not lose its runs
            logger.warning("run sweep before a heartbeat failed: %s", exc, extra={"action": "hb"})
        ids, lease = list(run_ids), self.settings.concurrency_lease_seconds
        return retrying(lambda: self.store.run_leases.heartbeat_worker(worker_id, ids, lease))

    def claim_flow_runs(
        self,
        worker_id: str,
        *,
        pool: str | None = None,
        queues: Sequence[str] | None = None,
        deployments: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
        process: ProcessInfo | None = None,
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` due runs, waiting up to ``wait`` seconds for one."""
        check_whole(limit, "claim limit", 1, INT32_MAX)
        if pool is None and not deployments:
            raise ValidationError("claim needs a work pool or deployments")
        if isinstance(wait, bool) or not isinstance(wait, int | float) or math.isnan(wait):
            raise ValidationError(f"claim wait must be a number of seconds, got {wait!r}")
        wait = max(0.0, min(float(wait), CLAIM_WAIT_MAX_SECONDS))
        owner = current_process() if process is None else validate_process(process)
        lease = self.settings.concurrency_lease_seconds
        deadline = time.monotonic() + wait
        listener = None
        woken = False
        try:
            while True:
                result = retrying(
                    lambda: self.store.claims.claim_flow_runs(
                        worker_id=worker_id,
                        pool=pool,
                        queues=queues,
                        deployments=deployments,
                        limit=limit,
                        process=owner,
                        lease_seconds=lease,
                    )
                )
                self._notify(result.wake)
                remaining = deadline - time.monotonic()
                # After a wake-up the caller hears back even empty-handed: it may
                # be stopping (a worker pokes its own claim to end it).
                if result.claimed or remaining <= 0 or woken:
                    return result.claimed
                if listener is None:
                    # A wake-up sent before this point is kept for us (it is not lost).
                    listener = self.wakeups.listen(f"claim:{worker_id}")
                pause = min(remaining, CLAIM_RECHECK_SECONDS)
                if result.next_due is not None:
                    pause = min(pause, max(0.0, result.next_due - self.store.clock.now()) + 0.001)
                woken = listener.wait(pause)
        finally:
            if listener is not None:
                listener.close()

    # -- background work ---------------------------------------------------------------
    def schedule_runs(
        self,
        *,
        horizon_seconds: float | None = None,
        max_runs: int = SCHEDULE_MAX_RUNS,
    ) -> int:
        """Create the runs of every active schedule within the horizon (idempotent).

        The horizon defaults to the ``scheduler_horizon_seconds`` setting.
        """
        if horizon_seconds is None:
            horizon_seconds = self.settings.scheduler_horizon_seconds
        created, wake = self.store.scheduling.schedule_runs(
            horizon_seconds=horizon_seconds, max_runs=max_runs
        )
        self._notify(wake)
        return created

    def mark_late_runs(self, late_after_seconds: float | None = None) -> int:
        """Mark deployment runs not started long after their time Late.

        How long defaults to the ``late_after_seconds`` setting.
        """
        if late_after_seconds is None:
            late_after_seconds = self.settings.late_after_seconds
        return self.store.scheduling.mark_late_runs(late_after_seconds)

    def sweep_runs(self) -> int:
        """End runs whose worker stopped renewing their lease (CRASHED); free their slots."""
        count, wake = retrying(self.store.run_leases.sweep_runs)
        self._notify(wake)
        return count


def _check(
    schema: Mapping[str, Any] | None, params: Mapping[str, Any], what: str, *, complete: bool
) -> None:
    if complete:
        check_parameters(schema, params, what)
    else:
        partial = None if schema is None else {**schema, "required": []}
        check_parameters(partial, params, what)


__all__ = [
    "CLAIM_RECHECK_SECONDS",
    "LATE_AFTER_SECONDS",
    "SCHEDULE_HORIZON_SECONDS",
    "SCHEDULE_MAX_RUNS",
    "DeploymentPolicy",
]
