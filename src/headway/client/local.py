"""LocalClient: the Orchestrator in this process, on the embedded (or a direct) store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from headway.client.base import Client
from headway.core.limits import LimitDetail, SlotGrant, SlotWait
from headway.core.models import FlowRun, Limit, LogRecord, TaskRun
from headway.core.states import State, StateType
from headway.orchestrator import Orchestrator
from headway.settings import Settings
from headway.store.runs import TaskRunRecord
from headway.store.store import Store


class LocalClient(Client):
    """Calls the Orchestrator directly; the store is opened (and migrated) on first use."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self._store = store
        self._orchestrator: Orchestrator | None = None

    @property
    def orchestrator(self) -> Orchestrator:
        """The Orchestrator over this client's store."""
        if self._orchestrator is None:
            if self._store is None:
                self._store = Store.open(self.settings)
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

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
