"""LocalClient: the Orchestrator in this process, on the embedded (or a direct) store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from headway.client.base import Client
from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.core.deployments import DeploymentSpec
from headway.core.limits import LimitDetail, SlotGrant, SlotWait
from headway.core.models import (
    ClaimedRun,
    Deployment,
    FlowRun,
    HeartbeatResult,
    Limit,
    LogRecord,
    TaskRun,
    Worker,
    WorkPool,
    WorkQueue,
)
from headway.core.states import State, StateType
from headway.explain import DeploymentExplanation, RunExplanation, StatusReport
from headway.orchestrator import Orchestrator
from headway.settings import Settings
from headway.store.events import EventPage, LimitStats
from headway.store.runs import TaskRunRecord
from headway.store.store import Store


class LocalClient(Client):
    """Calls the Orchestrator directly; the store is opened (and migrated) on first use."""

    def __init__(
        self, settings: Settings, store: Store | None = None, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._orchestrator: Orchestrator | None = None

    @property
    def orchestrator(self) -> Orchestrator:
        """The Orchestrator over this client's store."""
        if self._orchestrator is None:
            if self._store is None:
                self._store = Store.open(self.settings, clock=self._clock)
            self._orchestrator = Orchestrator(self._store, self.settings)
        return self._orchestrator

    @property
    def store(self) -> Store:
        """The store (opened on first use)."""
        return self.orchestrator.store

    def create_flow_run(self, **fields: Any) -> FlowRun:
        return self.orchestrator.create_flow_run(**fields)

    def set_flow_run_state(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> FlowRun:
        return self.orchestrator.set_flow_run_state(run_id, state, expect=expect)

    def read_flow_run(self, run_id: str, *, with_task_runs: bool = False) -> FlowRun:
        return self.orchestrator.read_flow_run(run_id, with_task_runs=with_task_runs)

    def list_flow_runs(self, **filters: Any) -> list[FlowRun]:
        return self.orchestrator.list_flow_runs(**filters)

    def record_task_runs(self, records: Sequence[TaskRunRecord]) -> None:
        self.orchestrator.record_task_runs(records)

    def read_task_run(self, task_run_id: str) -> TaskRun:
        return self.orchestrator.read_task_run(task_run_id)

    def read_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        return self.orchestrator.read_task_runs(flow_run_id)

    def read_states(self, run_id: str) -> list[State]:
        return self.orchestrator.read_states(run_id)

    def write_logs(self, records: Sequence[LogRecord]) -> None:
        self.orchestrator.write_logs(records)

    def read_logs(self, flow_run_id: str, *, after_id: int = 0) -> list[tuple[int, LogRecord]]:
        return self.orchestrator.read_logs(flow_run_id, after_id=after_id)

    # -- limits and slots ----------------------------------------------------------
    def create_limit(self, name: str, limit: int, **fields: Any) -> Limit:
        return self.orchestrator.create_limit(name, limit, **fields)

    def read_limit(self, name: str) -> Limit:
        return self.orchestrator.read_limit(name)

    def list_limits(self, *, prefix: str | None = None) -> list[Limit]:
        return self.orchestrator.list_limits(prefix=prefix)

    def update_limit(self, name: str, **fields: Any) -> Limit:
        return self.orchestrator.update_limit(name, **fields)

    def delete_limit(self, name: str, *, force: bool = False) -> None:
        self.orchestrator.delete_limit(name, force=force)

    def reset_limit(self, name: str) -> Limit:
        return self.orchestrator.reset_limit(name)

    def inspect_limit(self, name: str) -> LimitDetail:
        return self.orchestrator.inspect_limit(name)

    def acquire_slots(
        self, names: Sequence[str], slots: int = 1, **options: Any
    ) -> SlotGrant | SlotWait:
        return self.orchestrator.acquire_slots(names, slots, **options)

    def cancel_slot_wait(self, waiter_id: str) -> None:
        self.orchestrator.cancel_slot_wait(waiter_id)

    def release_slots(self, lease_id: str) -> bool:
        return self.orchestrator.release_slots(lease_id)

    def renew_leases(
        self, lease_ids: Sequence[str], lease_seconds: float | None = None
    ) -> list[str]:
        return self.orchestrator.renew_leases(lease_ids, lease_seconds)

    def sweep_slots(self) -> int:
        return self.orchestrator.sweep_slots()

    # -- work pools and queues -----------------------------------------------------
    def create_work_pool(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkPool:
        return self.orchestrator.create_work_pool(
            name, concurrency_limit=concurrency_limit, description=description
        )

    def read_work_pool(self, name: str) -> WorkPool:
        return self.orchestrator.read_work_pool(name)

    def list_work_pools(self) -> list[WorkPool]:
        return self.orchestrator.list_work_pools()

    def update_work_pool(self, name: str, *, paused: bool | None = None) -> WorkPool:
        return self.orchestrator.update_work_pool(name, paused=paused)

    def set_work_pool_concurrency_limit(self, name: str, limit: int | None) -> WorkPool:
        return self.orchestrator.set_work_pool_concurrency_limit(name, limit)

    def delete_work_pool(self, name: str) -> None:
        self.orchestrator.delete_work_pool(name)

    def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int = 0,
        concurrency_limit: int | None = None,
    ) -> WorkQueue:
        return self.orchestrator.create_work_queue(
            pool, name, priority=priority, concurrency_limit=concurrency_limit
        )

    def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        return self.orchestrator.read_work_queue(pool, name)

    def list_work_queues(self, pool: str | None = None) -> list[WorkQueue]:
        return self.orchestrator.list_work_queues(pool)

    def update_work_queue(
        self, pool: str, name: str, *, priority: int | None = None, paused: bool | None = None
    ) -> WorkQueue:
        return self.orchestrator.update_work_queue(pool, name, priority=priority, paused=paused)

    def set_work_queue_concurrency_limit(
        self, pool: str, name: str, limit: int | None
    ) -> WorkQueue:
        return self.orchestrator.set_work_queue_concurrency_limit(pool, name, limit)

    def delete_work_queue(self, pool: str, name: str) -> None:
        self.orchestrator.delete_work_queue(pool, name)

    # -- deployments ---------------------------------------------------------------
    def apply_deployment(self, spec: DeploymentSpec) -> Deployment:
        return self.orchestrator.apply_deployment(spec)

    def read_deployment(self, name: str) -> Deployment:
        return self.orchestrator.read_deployment(name)

    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        return self.orchestrator.list_deployments(work_pool=work_pool, flow_name=flow_name)

    def update_deployment(self, name: str, *, paused: bool | None = None) -> Deployment:
        return self.orchestrator.update_deployment(name, paused=paused)

    def set_deployment_concurrency_limit(
        self,
        name: str,
        limit: int | None,
        *,
        collision_strategy: str | None = None,
        concurrency_key: str | None = None,
    ) -> Deployment:
        return self.orchestrator.set_deployment_concurrency_limit(
            name, limit, collision_strategy=collision_strategy, concurrency_key=concurrency_key
        )

    def delete_deployment(self, name: str) -> None:
        self.orchestrator.delete_deployment(name)

    def create_deployment_run(
        self,
        name: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        scheduled_time: datetime | None = None,
        priority: int = 0,
    ) -> FlowRun:
        return self.orchestrator.create_deployment_run(
            name, parameters=parameters, scheduled_time=scheduled_time, priority=priority
        )

    def cancel_flow_run(self, run_id: str, message: str | None = None) -> FlowRun:
        return self.orchestrator.cancel_flow_run(run_id, message)

    # -- workers -------------------------------------------------------------------
    def register_worker(
        self, pool: str, name: str, *, pid: int | None = None, host: str | None = None
    ) -> Worker:
        return self.orchestrator.register_worker(pool, name, pid=pid, host=host)

    def list_workers(self, pool: str | None = None) -> list[Worker]:
        return self.orchestrator.list_workers(pool)

    def remove_worker(self, worker_id: str) -> None:
        self.orchestrator.remove_worker(worker_id)

    def heartbeat_worker(self, worker_id: str, run_ids: Sequence[str]) -> HeartbeatResult:
        return self.orchestrator.heartbeat_worker(worker_id, run_ids)

    def claim_flow_runs(
        self,
        worker_id: str,
        *,
        pool: str | None = None,
        queues: Sequence[str] | None = None,
        deployments: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[ClaimedRun]:
        return self.orchestrator.claim_flow_runs(
            worker_id, pool=pool, queues=queues, deployments=deployments, limit=limit, wait=wait
        )

    def schedule_runs(self) -> int:
        return self.orchestrator.schedule_runs()

    def mark_late_runs(self) -> int:
        return self.orchestrator.mark_late_runs()

    def sweep_runs(self) -> int:
        return self.orchestrator.sweep_runs()

    # -- explaining and observing ----------------------------------------------------
    def explain_run(self, run_id: str) -> RunExplanation:
        return self.orchestrator.explain_run(run_id)

    def explain_deployment(self, name: str) -> DeploymentExplanation:
        return self.orchestrator.explain_deployment(name)

    def read_events(self, **filters: Any) -> EventPage:
        return self.orchestrator.read_events(**filters)

    def status(self) -> StatusReport:
        return self.orchestrator.status()

    def limit_stats(self, *, prefix: str | None = None) -> list[LimitStats]:
        return self.orchestrator.limit_stats(prefix=prefix)

    def close(self) -> None:
        if self._orchestrator is not None:
            self._orchestrator.close_wakeups()
        if self._store is not None:
            self._store.close()
