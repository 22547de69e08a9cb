"""``GET /metrics``: Prometheus text, gathered from the store at scrape time.

Read through the Orchestrator, like every route; this module only shapes the answer.

Nothing is counted in the server's memory: every figure is read from the store
when Prometheus asks, so several servers on one PostgreSQL report the same
numbers, and a restart loses nothing. Counters only grow (they are columns the
slot engine increments in its transactions); histograms are the store's bucket
counters (``store/events.py``).

============================================  ==========================================
``headway_limit_slots``                       slots a limit allows (0 while inactive)
``headway_limit_active_slots``                slots taken now
``headway_limit_waiters``                     requests waiting now
``headway_limit_holders``                     leases holding slots now
``headway_limit_grants_total``                requests granted
``headway_limit_denials_total``               requests that had to queue
``headway_limit_lease_expiries_total``        leases reaped (expired, or holder gone)
``headway_limit_releases_total``              leases given back
``headway_limit_hold_seconds_total``          slot-seconds held by leases given back
``headway_limit_wait_seconds``                histogram: how long granted requests waited
``headway_limit_utilization_while_waiting``   share of it held while anyone waited (last minute)
``headway_flow_runs``                         flow runs by state type
``headway_claim_latency_seconds``             histogram: due -> claimed, per work pool
``headway_workers``                           workers by pool, online (heard from lately)
============================================  ==========================================

Behind the API key like every route but ``/health`` (Prometheus sends it as a
bearer token: ``authorization: {credentials: ...}`` in its scrape config).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.responses import Response

from headway.core.events import Histogram, add_zero_observations, empty_histogram
from headway.core.states import StateType
from headway.orchestrator import Orchestrator

router = APIRouter(tags=["metrics"])


class StoreCollector:
    """A Prometheus collector reading every figure from the store when scraped."""

    def __init__(self, orchestrator: Callable[[], Orchestrator]) -> None:
        self._orchestrator = orchestrator

    def collect(self) -> Iterator[Metric]:
        """Every metric family, from one pass over the store."""
        orch = self._orchestrator()
        stats = orch.limit_stats()
        waits = {h.label: h for h in orch.slot_wait_histograms()}
        claims = orch.claim_latency_histograms()
        by_state = orch.count_flow_runs_by_state()
        workers = orch.list_workers()

        labels = ["limit", "scope"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "slots": GaugeMetricFamily(
                "headway_limit_slots", "Slots the limit allows (0 while inactive).", labels=labels
            ),
            "active": GaugeMetricFamily(
                "headway_limit_active_slots", "Slots of the limit taken now.", labels=labels
            ),
            "waiters": GaugeMetricFamily(
                "headway_limit_waiters", "Requests waiting for the limit now.", labels=labels
            ),
            "holders": GaugeMetricFamily(
                "headway_limit_holders", "Leases holding slots of the limit now.", labels=labels
            ),
            "grants": CounterMetricFamily(
                "headway_limit_grants", "Requests granted slots of the limit.", labels=labels
            ),
            "denials": CounterMetricFamily(
                "headway_limit_denials",
                "Requests that found the limit full (or others waiting) and queued.",
                labels=labels,
            ),
            "expiries": CounterMetricFamily(
                "headway_limit_lease_expiries",
                "Leases of the limit reaped: expired, or their holder process was gone.",
                labels=labels,
            ),
            "releases": CounterMetricFamily(
                "headway_limit_releases", "Leases of the limit given back.", labels=labels
            ),
            "hold": CounterMetricFamily(
                "headway_limit_hold_seconds",
                "Slot-seconds held by the leases of the limit given back.",
                labels=labels,
            ),
            "utilization": GaugeMetricFamily(
                "headway_limit_utilization_while_waiting",
                "Share (0-1) of the limit held while any request waited, over the last"
                " minute; absent when nobody waited then, or for a rate limit.",
                labels=labels,
            ),
        }
        wait_family = HistogramMetricFamily(
            "headway_limit_wait_seconds",
            "How long granted requests waited for the limit (0 when granted at once).",
            labels=labels,
        )
        for s in stats:
            values = [s.name, s.scope]
            families["slots"].add_metric(values, s.limit if s.active else 0)
            families["active"].add_metric(values, s.active_slots)
            families["waiters"].add_metric(values, s.waiters)
            families["holders"].add_metric(values, s.holders)
            if s.utilization_while_waiting is not None:
                families["utilization"].add_metric(values, s.utilization_while_waiting)
            families["grants"].add_metric(values, s.grants)
            families["denials"].add_metric(values, s.denials)
            families["expiries"].add_metric(values, s.expiries)
            families["releases"].add_metric(values, s.releases)
            families["hold"].add_metric(values, s.total_hold_seconds)
            waited = waits.get(s.name) or empty_histogram(s.name)
            # Only requests that waited are bucketed; the rest of the grants waited 0.
            hist = add_zero_observations(waited, s.grants - waited.count)
            wait_family.add_metric(values, _buckets(hist), hist.total)
        yield from families.values()
        yield wait_family

        runs = GaugeMetricFamily("headway_flow_runs", "Flow runs by state.", labels=["state"])
        for state in StateType:
            runs.add_metric([state.value], by_state.get(state.value, 0))
        yield runs

        latency = HistogramMetricFamily(
            "headway_claim_latency_seconds",
            "From a deployment run's scheduled time to a worker claiming it, per work pool"
            " (empty pool: served by serve()).",
            labels=["pool"],
        )
        for h in claims:
            latency.add_metric([h.label], _buckets(h), h.total)
        yield latency

        online = GaugeMetricFamily(
            "headway_workers", "Workers by pool and whether heard from lately.",
            labels=["pool", "online"],
        )  # fmt: skip
        counts: dict[tuple[str, str], int] = {}
        for w in workers:
            key = (w.pool, "true" if w.online else "false")
            counts[key] = counts.get(key, 0) + 1
        for (pool, is_online), n in sorted(counts.items()):
            online.add_metric([pool, is_online], n)
        yield online


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    return [("+Inf" if math.isinf(le) else str(float(le)), float(n)) for le, n in hist.buckets]


def metrics_registry(orchestrator: Callable[[], Orchestrator]) -> CollectorRegistry:
    """A registry holding only the store collector (no process metrics of one server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(orchestrator))
    return registry


@router.get("/metrics", response_model=None, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of headway's limits, runs, claims and workers."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        app = request.app
        registry = metrics_registry(lambda: app.state.orchestrator)
        request.app.state.metrics_registry = registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["StoreCollector", "metrics_registry", "router"]
