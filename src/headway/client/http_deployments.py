"""The deployment half of the Client contract over HTTP (mixed into ``HttpClient``).

Routes are in :mod:`headway.server.routes.deployments`. A claim is a long poll:
the server holds it up to ``wait`` seconds, and the read timeout allows for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from headway.core.deployments import DeploymentSpec, split_full_name
from headway.core.models import (
    ClaimedRun,
    Deployment,
    FlowRun,
    HeartbeatResult,
    Worker,
    WorkPool,
    WorkQueue,
    to_jsonable,
)

T = TypeVar("T")


def _decode(cls: type[T], value: Any) -> T:
    from headway.client.http import decode

    return decode(cls, value)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _deployment_path(name: str) -> str:
    flow, dep = split_full_name(name)
    return f"/deployments/{_seg(flow)}/{_seg(dep)}"


class DeploymentHttpMethods:
    """Pools, queues, deployments, workers and claims as requests to the server."""

    if TYPE_CHECKING:
        timeout_seconds: float

        def request(
            self,
            method: str,
            path: str,
            *,
            body: Any = None,
            content: bytes | None = None,
            params: dict[str, Any] | list[tuple[str, Any]] | None = None,
            timeout: float | None = None,
            idempotent: bool | None = None,
        ) -> Any: ...

    # -- work pools and queues -----------------------------------------------------
    def create_work_pool(
        self, name: str, *, concurrency_limit: int | None = None, description: str = ""
    ) -> WorkPool:
        body = {"name": name, "concurrency_limit": concurrency_limit, "description": description}
        return _decode(WorkPool, self.request("POST", "/work_pools", body=body))

    def read_work_pool(self, name: str) -> WorkPool:
        return _decode(WorkPool, self.request("GET", f"/work_pools/{_seg(name)}"))

    def list_work_pools(self) -> list[WorkPool]:
        return [_decode(WorkPool, r) for r in self.request("GET", "/work_pools")]

    def update_work_pool(self, name: str, *, paused: bool | None = None) -> WorkPool:
        answer = self.request(
            "PATCH", f"/work_pools/{_seg(name)}", body={"paused": paused}, idempotent=True
        )
        return _decode(WorkPool, answer)

    def set_work_pool_concurrency_limit(self, name: str, limit: int | None) -> WorkPool:
        answer = self.request(
            "PUT",
            f"/work_pools/{_seg(name)}/concurrency_limit",
            body={"limit": limit},
            idempotent=True,
        )
        return _decode(WorkPool, answer)

    def delete_work_pool(self, name: str) -> None:
        self.request("DELETE", f"/work_pools/{_seg(name)}")

    def create_work_queue(
        self,
        pool: str,
        name: str,
        *,
        priority: int = 0,
        concurrency_limit: int | None = None,
    ) -> WorkQueue:
        body = {"name": name, "priority": priority, "concurrency_limit": concurrency_limit}
        answer = self.request("POST", f"/work_pools/{_seg(pool)}/queues", body=body)
        return _decode(WorkQueue, answer)

    def read_work_queue(self, pool: str, name: str) -> WorkQueue:
        answer = self.request("GET", f"/work_pools/{_seg(pool)}/queues/{_seg(name)}")
        return _decode(WorkQueue, answer)

    def list_work_queues(self, pool: str | None = None) -> list[WorkQueue]:
        params = None if pool is None else {"pool": pool}
        return [_decode(WorkQueue, r) for r in self.request("GET", "/work_queues", params=params)]

    def update_work_queue(
        self, pool: str, name: str, *, priority: int | None = None, paused: bool | None = None
    ) -> WorkQueue:
        answer = self.request(
            "PATCH",
            f"/work_pools/{_seg(pool)}/queues/{_seg(name)}",
            body={"priority": priority, "paused": paused},
            idempotent=True,
        )
        return _decode(WorkQueue, answer)

    def set_work_queue_concurrency_limit(
        self, pool: str, name: str, limit: int | None
    ) -> WorkQueue:
        answer = self.request(
            "PUT",
            f"/work_pools/{_seg(pool)}/queues/{_seg(name)}/concurrency_limit",
            body={"limit": limit},
            idempotent=True,
        )
        return _decode(WorkQueue, answer)

    def delete_work_queue(self, pool: str, name: str) -> None:
        self.request("DELETE", f"/work_pools/{_seg(pool)}/queues/{_seg(name)}")

    # -- deployments ---------------------------------------------------------------
    def apply_deployment(self, spec: DeploymentSpec) -> Deployment:
        body = to_jsonable(spec)
        body["tags"] = list(spec.tags)
        body["schedules"] = [dict(s) for s in spec.schedules]
        # Applying the same spec twice gives the same deployment: safe to resend.
        return _decode(Deployment, self.request("POST", "/deployments", body=body, idempotent=True))

    def read_deployment(self, name: str) -> Deployment:
        return _decode(Deployment, self.request("GET", _deployment_path(name)))

    def list_deployments(
        self, *, work_pool: str | None = None, flow_name: str | None = None
    ) -> list[Deployment]:
        params = {
            k: v for k, v in (("work_pool", work_pool), ("flow_name", flow_name)) if v is not None
        }
        rows = self.request("GET", "/deployments", params=params or None)
        return [_decode(Deployment, r) for r in rows]

    def update_deployment(self, name: str, *, paused: bool | None = None) -> Deployment:
        answer = self.request(
            "PATCH", _deployment_path(name), body={"paused": paused}, idempotent=True
        )
        return _decode(Deployment, answer)

    def set_deployment_concurrency_limit(
        self,
        name: str,
        limit: int | None,
        *,
        collision_strategy: str | None = None,
        concurrency_key: str | None = None,
    ) -> Deployment:
        body = {
            "limit": limit,
            "collision_strategy": collision_strategy,
            "concurrency_key": concurrency_key,
        }
        answer = self.request(
            "PUT", _deployment_path(name) + "/concurrency_limit", body=body, idempotent=True
        )
        return _decode(Deployment, answer)

    def delete_deployment(self, name: str) -> None:
        self.request("DELETE", _deployment_path(name))

    def create_deployment_run(
        self,
        name: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        scheduled_time: datetime | None = None,
        priority: int = 0,
    ) -> FlowRun:
        body = {
            "parameters": None if parameters is None else to_jsonable(dict(parameters)),
            "scheduled_time": None if scheduled_time is None else scheduled_time.isoformat(),
            "priority": priority,
        }
        return _decode(FlowRun, self.request("POST", _deployment_path(name) + "/runs", body=body))

    def cancel_flow_run(self, run_id: str, message: str | None = None) -> FlowRun:
        answer = self.request(
            "POST", f"/flow_runs/{_seg(run_id)}/cancel", body={"message": message}, idempotent=True
        )
        return _decode(FlowRun, answer)

    # -- workers -------------------------------------------------------------------
    def register_worker(
        self, pool: str, name: str, *, pid: int | None = None, host: str | None = None
    ) -> Worker:
        body = {"pool": pool, "name": name, "pid": pid, "host": host}
        return _decode(Worker, self.request("POST", "/workers", body=body, idempotent=True))

    def list_workers(self, pool: str | None = None) -> list[Worker]:
        params = None if pool is None else {"pool": pool}
        return [_decode(Worker, r) for r in self.request("GET", "/workers", params=params)]

    def remove_worker(self, worker_id: str) -> None:
        self.request("DELETE", f"/workers/{_seg(worker_id)}", idempotent=True)

    def heartbeat_worker(self, worker_id: str, run_ids: Sequence[str]) -> HeartbeatResult:
        answer = self.request(
            "POST",
            f"/workers/{_seg(worker_id)}/heartbeat",
            body={"run_ids": list(run_ids)},
            idempotent=True,
        )
        return _decode(HeartbeatResult, answer)

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
        from headway.store.slots import current_process

        wait = max(0.0, min(float(wait), 30.0))
        body = {
            "pool": pool,
            "queues": None if queues is None else list(queues),
            "deployments": None if deployments is None else list(deployments),
            "limit": limit,
            "wait": wait,
            "process": to_jsonable(current_process()),
        }
        rows = self.request(
            "POST",
            f"/workers/{_seg(worker_id)}/claim",
            body=body,
            timeout=wait + self.timeout_seconds,
            # A lost answer may have claimed runs: they come back when their lease ends.
            idempotent=False,
        )
        return [_decode(ClaimedRun, r) for r in rows]

    def schedule_runs(self) -> int:
        return int(self.request("POST", "/scheduler/runs", idempotent=True)["created"])

    def mark_late_runs(self) -> int:
        return int(self.request("POST", "/scheduler/late", idempotent=True)["marked"])

    def sweep_runs(self) -> int:
        return int(self.request("POST", "/scheduler/sweep", idempotent=True)["ended"])


__all__ = ["DeploymentHttpMethods"]
