"""The Client protocol: every operation headway's callers perform, each declared once.

Every caller (SDK, concurrency API, CLI, worker) holds a ``Client``. Two classes
implement it: the :class:`~headway.orchestrator.Orchestrator` itself (the
embedded client, assembled by :mod:`headway.client.factory`) and
:class:`~headway.client.http.HttpClient`, which inherits this protocol: each
decorated method below is an :class:`~headway.api.operation.Op`, and reading it
from an HttpClient gives the method that sends it. The server builds its
routes from the same declarations (:mod:`headway.server.api_routes`). mypy
checks that the Orchestrator matches every signature here.

Adding an operation: its store part, its Orchestrator method, and one
declaration here (with its request model in :mod:`headway.api.schemas`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from headway.api.operation import Declared, delete, get, patch, post, put
from headway.core.deployments import DeploymentSpec
from headway.core.events import EventPage, LimitStats
from headway.core.limits import LimitDetail, Mode, ProcessInfo, SlotGrant, SlotWait
from headway.core.models import (
    ClaimedRun,
    Deployment,
    FlowRun,
    HeartbeatResult,
    Limit,
    LogLine,
    LogRecord,
    TaskRun,
    TaskRunRecord,
    Worker,
    WorkPool,
    WorkQueue,
)
from headway.core.states import State, StateType
from headway.explain import DeploymentExplanation, RunExplanation, StatusReport
from headway.settings import Settings

T = TypeVar("T")


class Client(Protocol):
    """Every operation headway's callers perform (see the module's docstring)."""

    settings: Settings

    # -- runs ----------------------------------------------------------------------
    @post("/flow_runs", body="FlowRunCreate", status=201, idempotent=True, tag="runs")
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
        raise Declared

    @post("/flow_runs/{run_id}/state", body="SetState", idempotent=True, segment=36, tag="runs")
    def set_flow_run_state(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> FlowRun:
        """Move a flow run to ``state``; IllegalTransition if the state machine forbids it."""
        raise Declared

    @get("/flow_runs/{run_id}", query="FlowRunRead", segment=36, tag="runs")
    def read_flow_run(self, run_id: str, *, with_task_runs: bool = False) -> FlowRun:
        """One flow run; ObjectNotFound if unknown."""
        raise Declared

    @get("/flow_runs", query="FlowRunsQuery", aliases={"states": "state"}, tag="runs")
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
        raise Declared

    @post("/task_runs/batch", body="TaskRunBatch", idempotent=True, tag="runs")
    def record_task_runs(self, records: Sequence[TaskRunRecord]) -> None:
        """Record task runs and the states they went through (batched by the SDK)."""
        raise Declared

    @get("/task_runs/{task_run_id}", segment=36, tag="runs")
    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run; ObjectNotFound if unknown."""
        raise Declared

    @get("/flow_runs/{flow_run_id}/task_runs", segment=36, tag="runs")
    def read_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        """The task runs of a flow run, in creation order."""
        raise Declared

    @get("/runs/{run_id}/states", segment=36, tag="runs")
    def read_states(self, run_id: str) -> list[State]:
        """The state history of a flow or task run, oldest first."""
        raise Declared

    @post("/logs/batch", body="LogBatch", idempotent=True, tag="logs")
    def write_logs(self, records: Sequence[LogRecord]) -> None:
        """Append log lines."""
        raise Declared

    @get("/flow_runs/{flow_run_id}/logs", query="LogsQuery", segment=36, tag="logs")
    def read_logs(self, flow_run_id: str, *, after_id: int = 0) -> list[LogLine]:
        """Log lines of a flow run after ``after_id``, with their ids."""
        raise Declared

    # -- limits and slots (the slot engine; see headway.core.limits) ---------------
    @post("/limits", body="LimitCreate", status=201, idempotent=False, tag="limits")
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
        raise Declared

    @get("/limits/{name:path}", query="LimitRead", tag="limits")
    def read_limit(self, name: str) -> Limit:
        """One limit; ObjectNotFound if unknown."""
        raise Declared

    @get("/limits", query="PrefixQuery", tag="limits")
    def list_limits(self, *, prefix: str | None = None) -> list[Limit]:
        """Limits by name (those starting with ``prefix``), dead holders reaped first."""
        raise Declared

    @patch("/limits/{name:path}", body="LimitUpdate", idempotent=False, tag="limits")
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
        raise Declared

    @delete("/limits/{name:path}", query="ForceQuery", idempotent=False, tag="limits")
    def delete_limit(self, name: str, *, force: bool = False) -> None:
        """Delete a limit; ConflictError while it has holders, unless ``force``."""
        raise Declared

    @post("/limits/{name:path}/reset", idempotent=True, tag="limits")
    def reset_limit(self, name: str) -> Limit:
        """Free every slot of a limit; its holders lose their leases."""
        raise Declared

    @get("/limits/{name:path}", params={"detail": "true"}, route=False, tag="limits")
    def inspect_limit(self, name: str) -> LimitDetail:
        """A limit with its holders and its waiters in grant order."""
        raise Declared

    @post("/slots/acquire", body="AcquireSlots", idempotent=False, tag="slots")
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
        raise Declared

    @post("/slots/cancel", body="WaiterRef", idempotent=True, tag="slots")
    def cancel_slot_wait(self, waiter_id: str) -> None:
        """Leave the queue; a call waiting as ``waiter_id`` returns a SlotWait promptly."""
        raise Declared

    @post("/slots/release", body="LeaseRef", answer="intact", idempotent=True, tag="slots")
    def release_slots(self, lease_id: str) -> bool:
        """Give a lease's slots back; False when it had already been reaped (lost)."""
        raise Declared

    @post("/slots/renew", body="RenewLeases", answer="lost", idempotent=True, tag="slots")
    def renew_leases(
        self, lease_ids: Sequence[str], lease_seconds: float | None = None
    ) -> list[str]:
        """Extend leases by ``lease_seconds`` from now; returns the ids that were lost."""
        raise Declared

    @post("/slots/sweep", answer="reaped", idempotent=True, tag="slots")
    def sweep_slots(self) -> int:
        """Reap expired leases and waiters now; how many leases were reaped."""
        raise Declared

    # -- work pools and queues (see headway.orchestration.deployments) --------------
    @post("/work_pools", body="WorkPoolCreate", status=201, tag="work pools")
    def create_work_pool(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkPool:
        """Create a pool with its ``default`` queue; ObjectAlreadyExists if taken."""
        raise Declared

    @get("/work_pools/{name}", tag="work pools")
    def read_work_pool(self, name: str) -> WorkPool:
        """One pool with its queues, limit and run counts; ObjectNotFound if unknown."""
        raise Declared

    @get("/work_pools", tag="work pools")
    def list_work_pools(self) -> list[WorkPool]:
        """Every pool, by name."""
        raise Declared

    @patch("/work_pools/{name}", body="PausedUpdate", idempotent=True, tag="work pools")
    def update_work_pool(self, name: str, *, paused: bool | None = None) -> WorkPool:
        """Pause (workers claim nothing from it) or resume a pool."""
        raise Declared

    @put("/work_pools/{name}/concurrency_limit", body="ConcurrencyLimitSet", tag="work pools")
    def set_work_pool_concurrency_limit(self, name: str, limit: int | None) -> WorkPool:
        """Set (None: clear) the pool's limit on its PENDING and RUNNING runs."""
        raise Declared

    @delete("/work_pools/{name}", idempotent=False, tag="work pools")
    def delete_work_pool(self, name: str) -> None:
        """Delete a pool; ConflictError while deployments use it."""
        raise Declared

    @post("/work_pools/{pool}/queues", body="WorkQueueCreate", status=201, tag="queues")
    def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int = 0,
        concurrency_limit: int | None = None,
    ) -> WorkQueue:
        """Create a queue in ``pool`` (higher priority is claimed first)."""
        raise Declared

    @get("/work_pools/{pool}/queues/{name}", tag="queues")
    def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        """One queue; ObjectNotFound if unknown."""
        raise Declared

    @get("/work_queues", query="PoolQuery", tag="queues")
    def list_work_queues(self, pool: str | None = None) -> list[WorkQueue]:
        """The queues of one pool, or of every pool."""
        raise Declared

    @patch(
        "/work_pools/{pool}/queues/{name}", body="WorkQueueUpdate", idempotent=True, tag="queues"
    )
    def update_work_queue(
        self, pool: str, name: str, *, priority: int | None = None, paused: bool | None = None
    ) -> WorkQueue:
        """Change a queue's priority; pause or resume it."""
        raise Declared

    @put(
        "/work_pools/{pool}/queues/{name}/concurrency_limit",
        body="ConcurrencyLimitSet",
        tag="queues",
    )
    def set_work_queue_concurrency_limit(
        self, pool: str, name: str, limit: int | None
    ) -> WorkQueue:
        """Set (None: clear) the queue's limit on its PENDING and RUNNING runs."""
        raise Declared

    @delete("/work_pools/{pool}/queues/{name}", idempotent=False, tag="queues")
    def delete_work_queue(self, pool: str, name: str) -> None:
        """Delete a queue (not ``default``); ConflictError while deployments use it."""
        raise Declared

    # -- deployments -----------------------------------------------------------------
    @post(
        "/deployments", body="DeploymentSpecIn", spread="spec", idempotent=True, tag="deployments"
    )
    def apply_deployment(self, spec: DeploymentSpec) -> Deployment:
        """Create or update the deployment ``<spec.flow_name>/<spec.name>``."""
        raise Declared

    @get("/deployments/{name:path}", tag="deployments")
    def read_deployment(self, name: str) -> Deployment:
        """One deployment by ``<flow>/<name>``; ObjectNotFound if unknown."""
        raise Declared

    @get("/deployments", query="DeploymentsQuery", tag="deployments")
    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        """Deployments by name."""
        raise Declared

    @patch("/deployments/{name:path}", body="PausedUpdate", idempotent=True, tag="deployments")
    def update_deployment(self, name: str, *, paused: bool | None = None) -> Deployment:
        """Pause (schedules stop; runs created ahead are removed) or resume."""
        raise Declared

    @put("/deployments/{name:path}/concurrency_limit", body="DeploymentLimitSet", tag="deployments")
    def set_deployment_concurrency_limit(
        self,
        name: str,
        limit: int | None,
        *,
        collision_strategy: str | None = None,
        concurrency_key: str | None = None,
    ) -> Deployment:
        """Set (None: clear) the deployment's limit, collision strategy and key template."""
        raise Declared

    @delete("/deployments/{name:path}", idempotent=False, tag="deployments")
    def delete_deployment(self, name: str) -> None:
        """Delete a deployment; its runs not started yet are cancelled."""
        raise Declared

    @post(
        "/deployments/{name:path}/runs", body="DeploymentRunCreate", status=201, tag="deployments"
    )
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
        """A new SCHEDULED run of a deployment, due at ``scheduled_time`` (default: now).

        ``flow_run_name`` names the run (default: the deployment's name and a random
        suffix); ``tags`` are added to the deployment's.
        """
        raise Declared

    @post("/flow_runs/{run_id}/cancel", body="CancelRun", idempotent=True, segment=36, tag="runs")
    def cancel_flow_run(self, run_id: str, message: str | None = None) -> FlowRun:
        """Cancel a run: at once if not started, else CANCELLING until its worker stops it."""
        raise Declared

    # -- workers ---------------------------------------------------------------------
    @post("/workers", body="WorkerRegister", status=201, idempotent=True, tag="workers")
    def register_worker(
        self, pool: str, name: str, *, pid: int | None = None, host: str | None = None
    ) -> Worker:
        """Record a worker of ``pool`` (``""``: a ``serve()`` process); its id is on the record."""
        raise Declared

    @get("/workers", query="PoolQuery", tag="workers")
    def list_workers(self, pool: str | None = None) -> list[Worker]:
        """Workers, most recently heard from first."""
        raise Declared

    @delete("/workers/{worker_id}", idempotent=True, segment=100, tag="workers")
    def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly."""
        raise Declared

    @post(
        "/workers/{worker_id}/heartbeat",
        body="Heartbeat",
        idempotent=True,
        segment=100,
        tag="workers",
    )
    def heartbeat_worker(self, worker_id: str, run_ids: Sequence[str]) -> HeartbeatResult:
        """Renew the worker and its runs' leases; which runs it lost, which to cancel."""
        raise Declared

    @post(
        "/workers/{worker_id}/claim", body="ClaimRuns", idempotent=False, segment=100, tag="workers"
    )
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
        raise Declared

    @post("/scheduler/runs", answer="created", idempotent=True, tag="workers")
    def schedule_runs(self) -> int:
        """Create the runs of every active schedule ahead of time (idempotent)."""
        raise Declared

    @post("/scheduler/late", answer="marked", idempotent=True, tag="workers")
    def mark_late_runs(self) -> int:
        """Mark deployment runs not started long after their time Late."""
        raise Declared

    @post("/scheduler/sweep", answer="ended", idempotent=True, tag="workers")
    def sweep_runs(self) -> int:
        """End runs whose worker stopped renewing their lease (CRASHED), freeing their slots."""
        raise Declared

    # -- explaining and observing (see headway.explain, headway.store.events) --------
    @get("/explain/runs/{run_id}", segment=100, tag="explain")
    def explain_run(self, run_id: str) -> RunExplanation:
        """Why a flow or task run waits (every limit in its way), waited, or is not limited."""
        raise Declared

    @get("/explain/deployments/{name:path}", tag="explain")
    def explain_deployment(self, name: str) -> DeploymentExplanation:
        """A deployment's effective concurrency policy, layer by layer."""
        raise Declared

    @get("/events", query="EventsQuery", tag="explain")
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
        raise Declared

    @get("/status", tag="explain")
    def status(self) -> StatusReport:
        """Runs by state, busiest limits, waiting runs, workers seen recently."""
        raise Declared

    @get("/limit_stats", query="PrefixQuery", tag="explain")
    def limit_stats(self, *, prefix: str | None = None) -> list[LimitStats]:
        """Limits with their counters (grants, denials, expiries, average hold, occupancy)."""
        raise Declared

    def stop_retrying(self) -> None:
        """Calls that cannot reach the store fail at once from now on, instead of retrying.

        For a process on its way out (a worker told to stop while its server is
        down): it should not wait out retry windows. Embedded clients have none.
        """
        return None

    def attempt_here(self, call: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``call`` (a few calls of this client) here, if that needs no waiting.

        ``(True, result)`` when it ran; ``(False, None)`` when it would have had to
        wait for a lock or the network, before anything was done: the caller then
        runs it elsewhere (asyncio code, on a thread). Only an embedded store can
        answer a slot call at once; a server always needs a round trip.
        """
        return False, None

    def close(self) -> None:
        """Release connections; the client must not be used afterwards."""
        return None
