"""The Client: the one contract every caller (SDK, concurrency API, CLI, worker) uses.

Two implementations: :class:`~headway.client.local.LocalClient` runs the
Orchestrator in this process on the embedded store; ``HttpClient`` makes the
same calls over HTTP. No caller knows which one it has.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.core.deployments import DeploymentSpec
from headway.core.limits import LimitDetail, Mode, ProcessInfo, SlotGrant, SlotWait
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
from headway.settings import Settings, get_settings
from headway.store.events import EventPage, LimitStats
from headway.store.runs import TaskRunRecord


class Client(abc.ABC):
    """Every operation headway's callers perform."""

    settings: Settings

    # -- runs ----------------------------------------------------------------------
    @abc.abstractmethod
    def create_flow_run(
        self,
        *,
        id: str,
        name: str,
        flow_name: str,
        state: State,
        parameters: dict[str, object] | None = None,
        deployment: str | None = None,
        parent_task_run_id: str | None = None,
        tags: Sequence[str] = (),
        pid: int | None = None,
        host: str | None = None,
    ) -> FlowRun:
        """Record a new flow run in its first state."""

    @abc.abstractmethod
    def set_flow_run_state(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> FlowRun:
        """Move a flow run to ``state``; IllegalTransition if the state machine forbids it."""

    @abc.abstractmethod
    def read_flow_run(self, run_id: str, *, with_task_runs: bool = False) -> FlowRun:
        """One flow run; ObjectNotFound if unknown."""

    @abc.abstractmethod
    def list_flow_runs(
        self,
        *,
        limit: int = 20,
        states: Sequence[StateType] | None = None,
        deployment: str | None = None,
        flow_name: str | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs, newest first."""

    @abc.abstractmethod
    def record_task_runs(self, records: Sequence[TaskRunRecord]) -> None:
        """Record task runs and the states they went through (batched by the SDK)."""

    @abc.abstractmethod
    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run; ObjectNotFound if unknown."""

    @abc.abstractmethod
    def read_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        """The task runs of a flow run, in creation order."""

    @abc.abstractmethod
    def read_states(self, run_id: str) -> list[State]:
        """The state history of a flow or task run, oldest first."""

    @abc.abstractmethod
    def write_logs(self, records: Sequence[LogRecord]) -> None:
        """Append log lines."""

    @abc.abstractmethod
    def read_logs(self, flow_run_id: str, *, after_id: int = 0) -> list[tuple[int, LogRecord]]:
        """Log lines of a flow run after ``after_id``, with their ids."""

    # -- limits and slots (the slot engine; see headway.core.limits) ---------------
    @abc.abstractmethod
    def create_limit(
        self,
        name: str,
        limit: int,
        *,
        active: bool = True,
        slot_decay_per_second: float = 0.0,
        active_slots: int = 0,
    ) -> Limit:
        """Create a limit of any scope; ValidationError, ObjectAlreadyExists."""

    @abc.abstractmethod
    def read_limit(self, name: str) -> Limit:
        """One limit; ObjectNotFound if unknown."""

    @abc.abstractmethod
    def list_limits(self, *, prefix: str | None = None) -> list[Limit]:
        """Limits by name (those starting with ``prefix``), dead holders reaped first."""

    @abc.abstractmethod
    def update_limit(
        self,
        name: str,
        *,
        limit: int | None = None,
        active: bool | None = None,
        slot_decay_per_second: float | None = None,
        active_slots: int | None = None,
    ) -> Limit:
        """Change a limit live (holders keep their slots); ObjectNotFound, ValidationError."""

    @abc.abstractmethod
    def delete_limit(self, name: str, *, force: bool = False) -> None:
        """Delete a limit; ConflictError while it has holders, unless ``force``."""

    @abc.abstractmethod
    def reset_limit(self, name: str) -> Limit:
        """Free every slot of a limit; its holders lose their leases."""

    @abc.abstractmethod
    def inspect_limit(self, name: str) -> LimitDetail:
        """A limit with its holders and its waiters in grant order."""

    @abc.abstractmethod
    def acquire_slots(
        self,
        names: Sequence[str],
        slots: int = 1,
        *,
        mode: Mode = "concurrency",
        priority: int = 0,
        holder_kind: str = "code",
        holder_id: str | None = None,
        process: ProcessInfo | None = None,
        lease_seconds: float | None = None,
        timeout: float | None = 0.0,
        waiter_id: str | None = None,
        strict: bool = False,
    ) -> SlotGrant | SlotWait:
        """Take ``slots`` of every named limit, all or nothing, waiting up to ``timeout``.

        Returns a :class:`SlotGrant` (its ``lease_id`` must be released, and renewed
        while held) or a :class:`SlotWait` with the reasons. ``timeout=0`` is one
        attempt, ``None`` waits until granted; an implementation may return a
        SlotWait earlier (an HTTP long poll ends at the server's cap), so callers
        that mean to wait loop with the same ``waiter_id``: with an id, the request
        keeps its place in the queue between calls until granted or
        :meth:`cancel_slot_wait`; without one, nothing is left queued on return.
        ``process`` is the holder's process (default: the caller's own).
        """

    @abc.abstractmethod
    def cancel_slot_wait(self, waiter_id: str) -> None:
        """Leave the queue; a call waiting as ``waiter_id`` returns a SlotWait promptly."""

    @abc.abstractmethod
    def release_slots(self, lease_id: str) -> bool:
        """Give a lease's slots back; False when it had already been reaped (lost)."""

    @abc.abstractmethod
    def renew_leases(
        self, lease_ids: Sequence[str], lease_seconds: float | None = None
    ) -> list[str]:
        """Extend leases by ``lease_seconds`` from now; returns the ids that were lost."""

    @abc.abstractmethod
    def sweep_slots(self) -> int:
        """Reap expired leases and waiters now; how many leases were reaped."""

    # -- work pools and queues (see headway.orchestration.deployments) --------------
    @abc.abstractmethod
    def create_work_pool(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkPool:
        """Create a pool with its ``default`` queue; ObjectAlreadyExists if taken."""

    @abc.abstractmethod
    def read_work_pool(self, name: str) -> WorkPool:
        """One pool with its queues, limit and run counts; ObjectNotFound if unknown."""

    @abc.abstractmethod
    def list_work_pools(self) -> list[WorkPool]:
        """Every pool, by name."""

    @abc.abstractmethod
    def update_work_pool(self, name: str, *, paused: bool | None = None) -> WorkPool:
        """Pause (workers claim nothing from it) or resume a pool."""

    @abc.abstractmethod
    def set_work_pool_concurrency_limit(self, name: str, limit: int | None) -> WorkPool:
        """Set (None: clear) the pool's limit on its PENDING and RUNNING runs."""

    @abc.abstractmethod
    def delete_work_pool(self, name: str) -> None:
        """Delete a pool; ConflictError while deployments use it."""

    @abc.abstractmethod
    def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int = 0,
        concurrency_limit: int | None = None,
    ) -> WorkQueue:
        """Create a queue in ``pool`` (higher priority is claimed first)."""

    @abc.abstractmethod
    def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        """One queue; ObjectNotFound if unknown."""

    @abc.abstractmethod
    def list_work_queues(self, pool: str | None = None) -> list[WorkQueue]:
        """The queues of one pool, or of every pool."""

    @abc.abstractmethod
    def update_work_queue(
        self, pool: str, name: str, *, priority: int | None = None, paused: bool | None = None
    ) -> WorkQueue:
        """Change a queue's priority; pause or resume it."""

    @abc.abstractmethod
    def set_work_queue_concurrency_limit(
        self, pool: str, name: str, limit: int | None
    ) -> WorkQueue:
        """Set (None: clear) the queue's limit on its PENDING and RUNNING runs."""

    @abc.abstractmethod
    def delete_work_queue(self, pool: str, name: str) -> None:
        """Delete a queue (not ``default``); ConflictError while deployments use it."""

    # -- deployments -----------------------------------------------------------------
    @abc.abstractmethod
    def apply_deployment(self, spec: DeploymentSpec) -> Deployment:
        """Create or update the deployment ``<spec.flow_name>/<spec.name>``."""

    @abc.abstractmethod
    def read_deployment(self, name: str) -> Deployment:
        """One deployment by ``<flow>/<name>``; ObjectNotFound if unknown."""

    @abc.abstractmethod
    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        """Deployments by name."""

    @abc.abstractmethod
    def update_deployment(self, name: str, *, paused: bool | None = None) -> Deployment:
        """Pause (schedules stop; runs created ahead are removed) or resume."""

    @abc.abstractmethod
    def set_deployment_concurrency_limit(
        self,
        name: str,
        limit: int | None,
        *,
        collision_strategy: str | None = None,
        concurrency_key: str | None = None,
    ) -> Deployment:
        """Set (None: clear) the deployment's limit, collision strategy and key template."""

    @abc.abstractmethod
    def delete_deployment(self, name: str) -> None:
        """Delete a deployment; its runs not started yet are cancelled."""

    @abc.abstractmethod
    def create_deployment_run(
        self,
        name: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        scheduled_time: datetime | None = None,
        priority: int = 0,
    ) -> FlowRun:
        """A new SCHEDULED run of a deployment, due at ``scheduled_time`` (default: now)."""

    @abc.abstractmethod
    def cancel_flow_run(self, run_id: str, message: str | None = None) -> FlowRun:
        """Cancel a run: at once if not started, else CANCELLING until its worker stops it."""

    # -- workers ---------------------------------------------------------------------
    @abc.abstractmethod
    def register_worker(
        self, pool: str, name: str, *, pid: int | None = None, host: str | None = None
    ) -> Worker:
        """Record a worker of ``pool`` (``""``: a ``serve()`` process); its id is on the record."""

    @abc.abstractmethod
    def list_workers(self, pool: str | None = None) -> list[Worker]:
        """Workers, most recently heard from first."""

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""

    @abc.abstractmethod
    def heartbeat_worker(self, worker_id: str, run_ids: Sequence[str]) -> HeartbeatResult:
        """Renew the worker and its runs' leases; which runs it lost, which to cancel."""

    @abc.abstractmethod
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
        """Claim up to ``limit`` due runs (PENDING, leased to ``worker_id``), waiting up to
        ``wait`` seconds for one: woken by a freed slot or a new due run."""

    @abc.abstractmethod
    def schedule_runs(self) -> int:
        """Create the runs of every active schedule ahead of time (idempotent)."""

    @abc.abstractmethod
    def mark_late_runs(self) -> int:
        """Mark deployment runs not started long after their time Late."""

    @abc.abstractmethod
    def sweep_runs(self) -> int:
        """End runs whose worker stopped renewing their lease (CRASHED), freeing their slots."""

    # -- explaining and observing (see headway.explain, headway.store.events) --------
    @abc.abstractmethod
    def explain_run(self, run_id: str) -> RunExplanation:
        """Why a flow or task run waits (every limit in its way), waited, or is not limited."""

    @abc.abstractmethod
    def explain_deployment(self, name: str) -> DeploymentExplanation:
        """A deployment's effective concurrency policy, layer by layer."""

    @abc.abstractmethod
    def read_events(
        self,
        *,
        run_id: str | None = None,
        limit_name: str | None = None,
        since: datetime | None = None,
        kind: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Recorded events in time order: the newest ``limit``, or those after the cursor
        ``after`` (a page's ``cursor``: pass it back to follow). ``kind`` is a prefix."""

    @abc.abstractmethod
    def status(self) -> StatusReport:
        """Runs by state, busiest limits, waiting runs, workers seen recently."""

    @abc.abstractmethod
    def limit_stats(self, *, prefix: str | None = None) -> list[LimitStats]:
        """Limits with their counters (grants, denials, expiries, average hold, occupancy)."""

    def stop_retrying(self) -> None:  # noqa: B027 - optional hook
        """Calls that cannot reach the store fail at once from now on, instead of retrying.

        For a process on its way out (a worker told to stop while its server is
        down): it should not wait out retry windows. Embedded clients have none.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the client must not be used afterwards."""


_default: Client | None = None
_default_lock = threading.Lock()


def get_client(settings: Settings | None = None) -> Client:
    """The process's default client: HTTP when ``HEADWAY_API_URL`` is set, else embedded.

    It is made on first use (never on import) and shared by the SDK, the
    concurrency API and the CLI of this process. Pass ``settings`` to build a
    separate client instead.
    """
    global _default
    if settings is not None:
        return _make_client(settings)
    client = _default
    if client is not None:
        return client
    with _default_lock:
        if _default is None:
            _default = _make_client(get_settings())
        return _default


def set_default_client(client: Client | None) -> Client | None:
    """Replace the process's default client (tests, embedding); returns the old one."""
    global _default
    with _default_lock:
        old, _default = _default, client
    return old


def _make_client(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Client:
    # ``clock`` is the embedded store's (a server keeps its own time).
    if settings.api_url:
        from headway.client.http import HttpClient  # server dependencies load only here

        client: Client = HttpClient(settings)
        return client
    from headway.client.local import LocalClient

    return LocalClient(settings, clock=clock)
