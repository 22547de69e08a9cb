"""Explanations, events, status and limit counters over HTTP (mixed into ``HttpClient``).

Routes are in :mod:`headway.server.routes.explain`; every one is a GET, so a
request whose answer was lost is simply asked again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from headway.explain import DeploymentExplanation, RunExplanation, StatusReport
from headway.store.events import EventPage, LimitStats

T = TypeVar("T")


def _decode(cls: type[T], value: Any) -> T:
    from headway.client.http import decode

    return decode(cls, value)


class ExplainHttpMethods:
    """``explain_run``, ``explain_deployment``, ``read_events``, ``status``, ``limit_stats``."""

    if TYPE_CHECKING:

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

    def explain_run(self, run_id: str) -> RunExplanation:
        answer = self.request("GET", f"/explain/runs/{quote(run_id, safe='')}")
        return _decode(RunExplanation, answer)

    def explain_deployment(self, name: str) -> DeploymentExplanation:
        answer = self.request("GET", f"/explain/deployments/{quote(name, safe='')}")
        return _decode(DeploymentExplanation, answer)

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
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
        for key, value in (
            ("run_id", run_id),
            ("limit_name", limit_name),
            ("kind", kind),
            ("after", after),
        ):
            if value is not None:
                params[key] = value
        return _decode(EventPage, self.request("GET", "/events", params=params))

    def status(self) -> StatusReport:
        return _decode(StatusReport, self.request("GET", "/status"))

    def limit_stats(self, *, prefix: str | None = None) -> list[LimitStats]:
        params = None if prefix is None else {"prefix": prefix}
        return [_decode(LimitStats, r) for r in self.request("GET", "/limit_stats", params=params)]


__all__ = ["ExplainHttpMethods"]
