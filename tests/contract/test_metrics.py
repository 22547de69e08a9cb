"""``/metrics``: Prometheus text parsed by prometheus-client's parser, checked against the store.

On server backends the text comes from the server's ``/metrics`` route over
HTTP (with the API key, which it requires); embedded, from the same collector
over the test's own store.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
import pytest

from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.limits import SlotGrant
from headway.core.states import Completed, Running
from helpers.metrics import lim, scrape
from helpers.waiting import wait_until

Backend = Any  # the conftest fixture's record (tests are not a package)


def test_metrics_match_the_store(backend: Backend, client: Client) -> None:
    client.create_limit("db", 2)
    client.create_limit("short", 1)
    first = client.acquire_slots(["db"], 2, holder_id="first")
    assert isinstance(first, SlotGrant)
    granted: list[SlotGrant] = []
    thread = threading.Thread(
        target=lambda: granted.append(client.acquire_slots(["db"], 1, timeout=30))  # type: ignore[arg-type]
    )
    thread.start()
    wait_until(lambda: client.read_limit("db").waiters == 1, "the second request queued")

    samples = scrape(backend)
    assert samples["headway_limit_slots"][lim("db")] == 2
    assert samples["headway_limit_active_slots"][lim("db")] == 2
    assert samples["headway_limit_waiters"][lim("db")] == 1
    assert samples["headway_limit_holders"][lim("db")] == 1
    assert samples["headway_limit_denials_total"][lim("db")] == 1

    # By the store's clock the second request waits a second, well above the
    # first bucket (on the wall clock alone it might wait under 5 ms).
    backend.clock.advance(1.0)
    client.release_slots(first.lease_id)
    thread.join(30)
    (second,) = granted
    client.release_slots(second.lease_id)
    expiring = client.acquire_slots(["short"], 1, lease_seconds=10)
    assert isinstance(expiring, SlotGrant)
    backend.clock.advance(11)  # past its lease: the next sweep reaps it
    assert client.sweep_slots() == 1

    stats = {s.name: s for s in client.limit_stats()}
    samples = scrape(backend)
    db = stats["db"]
    assert samples["headway_limit_grants_total"][lim("db")] == db.grants == 2
    assert samples["headway_limit_releases_total"][lim("db")] == db.releases == 2
    assert samples["headway_limit_active_slots"][lim("db")] == 0
    assert samples["headway_limit_lease_expiries_total"][lim("short")] == 1
    assert samples["headway_limit_hold_seconds_total"][lim("db")] == pytest.approx(
        db.total_hold_seconds
    )
    # Wait times: one request waited (for as long as the store says), one did not.
    assert samples["headway_limit_wait_seconds_count"][lim("db")] == 2
    assert samples["headway_limit_wait_seconds_sum"][lim("db")] == pytest.approx(
        db.total_wait_seconds
    )
    buckets = {
        dict(labels)["le"]: value
        for labels, value in samples["headway_limit_wait_seconds_bucket"].items()
        if dict(labels)["limit"] == "db"
    }
    assert buckets["+Inf"] == 2
    assert buckets["0.005"] == 1  # the first, granted at once
    waited = db.total_wait_seconds  # all of it is the second request's
    above = [float(le) for le, n in buckets.items() if le != "+Inf" and n == 2]
    assert above and min(above) >= waited


def test_flow_runs_by_state_and_claim_latency(backend: Backend, client: Client) -> None:
    for _ in range(2):
        client.create_flow_run(id=str(uuid.uuid4()), name="r", flow_name="f", state=Running())
    done = str(uuid.uuid4())
    client.create_flow_run(id=done, name="done", flow_name="f", state=Running())
    client.set_flow_run_state(done, Completed())
    client.create_work_pool("pool")
    spec = DeploymentSpec(
        flow_name="flow", name="d", entrypoint="/nowhere/flows.py:flow", work_pool="pool"
    )
    full = client.apply_deployment(spec).full_name
    client.create_deployment_run(full)
    worker = client.register_worker("pool", "w1")
    assert worker.id is not None
    (claimed,) = client.claim_flow_runs(worker.id, pool="pool")

    samples = scrape(backend)
    states = {dict(k)["state"]: v for k, v in samples["headway_flow_runs"].items()}
    assert states["RUNNING"] == 2 and states["COMPLETED"] == 1 and states["PENDING"] == 1
    assert states["FAILED"] == 0
    assert samples["headway_claim_latency_seconds_count"][(("pool", "pool"),)] == 1
    latency = next(
        e.seconds
        for e in client.read_events(run_id=claimed.run.id).events
        if e.kind == "flow_run.claimed"
    )
    assert latency is not None
    assert samples["headway_claim_latency_seconds_sum"][(("pool", "pool"),)] == pytest.approx(
        latency
    )
    assert samples["headway_workers"][(("online", "true"), ("pool", "pool"))] == 1


def test_metrics_need_the_api_key(backend: Backend) -> None:
    if backend.api_url is None:
        pytest.skip("an embedded store has no HTTP server")
    assert httpx.get(backend.api_url + "/metrics").status_code == 401


def test_a_wait_is_in_the_histogram_as_soon_as_it_is_granted(backend: Backend) -> None:
    # A grant's wait is buffered with the slot events (not written in the
    # grant's transaction); a reader of the histograms sees it at once all the same.
    if backend.is_server:
        pytest.skip("the embedded store's own process reads here; servers are scraped above")
    orch: Any = backend.client
    orch.create_limit("db", 1)
    first = orch.acquire_slots(["db"], 1)
    granted: list[SlotGrant] = []
    thread = threading.Thread(
        target=lambda: granted.append(orch.acquire_slots(["db"], 1, timeout=30))
    )
    thread.start()
    wait_until(lambda: orch.read_limit("db").waiters == 1, "the second request queued")
    orch.release_slots(first.lease_id)
    thread.join(30)
    (db,) = [h for h in orch.slot_wait_histograms() if h.label == "db"]
    (stats,) = [s for s in orch.limit_stats() if s.name == "db"]
    waited = stats.total_wait_seconds
    assert waited > 0 and db.total == pytest.approx(waited)
    orch.release_slots(granted[0].lease_id)
