"""``make demo`` is a test too: it runs as a user runs it, and what it claims is checked
against what the store recorded, so the story it tells cannot rot.

The demo runs twice on the same HEADWAY_HOME: first on a fresh store, then on
one that already holds its limits, pool, deployments and old runs.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headway.client.base import Client, get_client
from headway.core.models import FlowRun, TaskRun
from headway.core.states import StateType

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"

Interval = tuple[datetime, datetime]


def run_demo() -> str:
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    return " ".join(done.stdout.split())  # the lines as words: wrapping does not matter


def runs(client: Client, since: datetime, *, flow: str = "", deployment: str = "") -> list[FlowRun]:
    """This demo run's flow runs of a flow or a deployment, oldest first."""
    found = client.list_flow_runs(limit=200, flow_name=flow or None, deployment=deployment or None)
    mine = [r for r in found if r.created is not None and r.created >= since]
    return sorted(mine, key=lambda r: r.created or since)


def span(run: FlowRun | TaskRun) -> Interval:
    assert run.start_time is not None and run.end_time is not None, run
    return run.start_time, run.end_time


def all_overlap(spans: Sequence[Interval]) -> bool:
    return all(min(a[1], b[1]) > max(a[0], b[0]) for a, b in itertools.combinations(spans, 2))


def none_overlap(spans: Sequence[Interval]) -> bool:
    return all(min(a[1], b[1]) <= max(a[0], b[0]) for a, b in itertools.combinations(spans, 2))


def holdings(client: Client, limit: str, since: datetime) -> list[Interval]:
    """From the limit's recorded grants and releases: when each lease held it."""
    events = client.read_events(limit_name=limit, since=since, limit=1000).events
    granted: dict[str, datetime] = {}
    held = []
    for event in events:
        lease = event.detail.rpartition("lease=")[2]
        if event.kind == "slot.granted":
            granted[lease] = event.timestamp
        elif event.kind == "slot.released" and lease in granted:
            held.append((granted.pop(lease), event.timestamp))
    assert not granted, f"leases of {limit} never released: {granted}"
    return held


def denied(client: Client, run: FlowRun, limit: str, since: datetime) -> bool:
    events = client.read_events(run_id=run.id, limit_name=limit, since=since).events
    return any(e.kind == "slot.denied" for e in events)


def check_story(client: Client, out: str, since: datetime) -> None:
    # 1. Unlimited by default: two runs of one flow overlap; nothing limits them.
    assert "flow runs are unlimited unless a limit is configured" in out
    synced = runs(client, since, flow="sync-orders")
    assert [r.state.type for r in synced] == [StateType.COMPLETED] * 2
    assert all_overlap([span(r) for r in synced])
    assert not client.explain_run(synced[0].id).limited
    assert "they ran at once" in out

    # 2. The global limit, made by the CLI: never two holders at once, whoever held it.
    assert client.read_limit("warehouse").limit == 1
    assert "$ headway gcl " in out
    held = holdings(client, "warehouse", since)
    assert len(held) == 2 + 1 + 2 + 2  # queue, skip (the holder only), sections, asyncio
    assert none_overlap(held)
    # queue: the second load waited, then ran
    first, second = runs(client, since, flow="load-batch")
    assert denied(client, second, "warehouse", since)
    assert not denied(client, first, "warehouse", since)
    assert second.state.type is StateType.COMPLETED
    assert "the two held it one at a time" in out
    # skip: the second refresh ended before the holder, took no slot, and said it skipped
    holder, skipper = runs(client, since, flow="refresh-report")
    assert skipper.state.type is StateType.COMPLETED
    assert span(skipper)[1] < span(holder)[1]
    events = client.read_events(run_id=skipper.id, since=since).events
    assert not any(e.kind == "slot.granted" for e in events)
    logs = [line.message for _, line in client.read_logs(skipper.id)]
    assert "the warehouse is busy: skipped this refresh" in logs
    assert "skipped this refresh" in out
    # critical section: downloads at once, writes one at a time
    tasks = [
        t for r in runs(client, since, flow="sync-region") for t in client.read_task_runs(r.id)
    ]
    downloads = [span(t) for t in tasks if t.name.startswith("download")]
    writes = [span(t) for t in tasks if t.name.startswith("write_rows")]
    assert len(downloads) == len(writes) == 2
    assert all_overlap(downloads) and none_overlap(writes)
    assert "the downloads ran at once" in out and "the writes ran one at a time" in out
    # asyncio: one of the two waited
    loads = runs(client, since, flow="async-load")
    assert [r.state.type for r in loads] == [StateType.COMPLETED] * 2
    assert sum(denied(client, r, "warehouse", since) for r in loads) == 1
    assert "the two held 'warehouse' one at a time" in out

    # 3. Served deployments.
    free = runs(client, since, deployment="nightly-report/overlapping")
    assert [r.state.type for r in free] == [StateType.COMPLETED] * 3
    assert all_overlap([span(r) for r in free])
    assert "the three ran at once" in out
    queued = runs(client, since, deployment="nightly-report/one-at-a-time")
    assert [r.state.type for r in queued] == [StateType.COMPLETED] * 3
    assert none_overlap([span(r) for r in queued])
    for run in queued[1:]:
        assert "AwaitingConcurrencySlot" in [s.name for s in client.read_states(run.id)]
    # `headway why` on the second, while the first ran
    assert f"$ headway why {queued[1].id}" in out
    assert "Waiting for 'deployment:nightly-report/one-at-a-time' (deployment limit)" in out
    assert "position 1 of 2 waiting" in out
    assert f"flow run '{queued[0].name}' ({queued[0].id}): 1 slot(s)" in out
    first, *late = runs(client, since, deployment="nightly-report/no-pileup")
    assert first.state.type is StateType.COMPLETED
    assert [r.state.type for r in late] == [StateType.CANCELLED] * 2
    for run in late:
        assert run.start_time is None
        assert "CANCEL_NEW" in (run.state.message or "")
        assert run.end_time is not None and run.end_time < span(first)[1]
    assert "Recorded for the 2 newcomers: CANCELLED" in out

    # 4. The tag limit and the work-pool limit.
    assert client.read_limit("tag:partner-api").limit == 1
    (enrich,) = runs(client, since, flow="enrich-products")
    calls = client.read_task_runs(enrich.id)
    assert [t.state.type for t in calls] == [StateType.COMPLETED] * 3
    assert none_overlap([span(t) for t in calls])
    assert "the calls ran one at a time" in out
    assert "$ headway work-pool set-concurrency-limit demo-pool 1" in out
    assert client.read_work_pool("demo-pool").concurrency_limit == 1
    pooled = runs(client, since, deployment="nightly-report/pooled")
    assert [r.state.type for r in pooled] == [StateType.COMPLETED] * 2
    assert none_overlap([span(r) for r in pooled])
    # the second was claimed (its pool slot taken) only once the first had ended
    first, second = sorted(pooled, key=lambda r: span(r)[0])
    claimed = [s.timestamp for s in client.read_states(second.id) if s.type is StateType.PENDING]
    assert claimed[0] >= span(first)[1]

    # 5. Where to look further.
    for command in ("headway gcl inspect warehouse", "headway flow-run ls", "headway server start"):
        assert command in out
    assert "http://127.0.0.1:4200/" in out
    # The served processes and the worker stopped and said goodbye.
    assert client.list_workers() == []


@pytest.mark.slow
@pytest.mark.fresh_store  # the first run is a new user's, on a new store
@pytest.mark.timeout(480)
def test_the_demo_tells_what_the_store_recorded_twice_on_one_store() -> None:
    client = get_client()
    since = datetime.now(UTC)
    check_story(client, run_demo(), since)
    again = datetime.now(UTC)
    out = run_demo()
    assert "exists from an earlier run of the demo" in out
    check_story(client, out, again)
