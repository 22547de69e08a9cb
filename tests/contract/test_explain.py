"""``explain_run`` and ``explain_deployment``: a scenario per answer, on every backend.

Each scenario builds the situation for real (a holder in another process,
waiters queued in threads, deployment runs claimed by the test) and checks the
answer names the holder, the right position, the strategy in force, and says
so when nothing limits a run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headway import exceptions
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.limits import SlotGrant
from headway.core.models import TaskRunRecord
from headway.core.states import (
    AWAITING_CONCURRENCY_SLOT,
    Completed,
    Pending,
    Running,
    State,
    StateType,
)
from headway.explain import RunExplanation
from helpers.waiting import wait_until

HOLDER_SCRIPT = """
import sys
from headway.client.base import get_client
client = get_client()
grant = client.acquire_slots([sys.argv[1]], 1, holder_id=sys.argv[2], timeout=30)
print("held", flush=True)
sys.stdin.read()
client.release_slots(grant.lease_id)
client.close()
"""


def new_run(client: Client, name: str, **fields: Any) -> str:
    run_id = str(uuid.uuid4())
    client.create_flow_run(
        id=run_id, name=name, flow_name="flow", state=fields.pop("state", Running()), **fields
    )
    return run_id


class Waiter:
    """A request waiting for slots in a thread, as a run's code would."""

    def __init__(self, client: Client, names: list[str], holder_id: str, **kw: Any) -> None:
        self.client = client
        self.grant: SlotGrant | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(names, holder_id, kw), daemon=True)
        self._thread.start()

    def _run(self, names: list[str], holder_id: str, kw: dict[str, Any]) -> None:
        try:
            answer = self.client.acquire_slots(names, 1, holder_id=holder_id, timeout=30, **kw)
            assert isinstance(answer, SlotGrant)
            self.grant = answer
        except BaseException as exc:
            self.error = exc

    def finish(self) -> SlotGrant:
        self._thread.join(30)
        assert self.error is None, self.error
        assert self.grant is not None
        return self.grant


def waiting_on(client: Client, run_id: str, n: int = 1) -> Callable[[], bool]:
    return lambda: len(client.explain_run(run_id).blockers) == n


@pytest.fixture
def holder_process(client: Client) -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    """Start processes that hold one slot of a limit until their stdin closes."""
    procs: list[subprocess.Popen[str]] = []

    def start(limit: str, holder_id: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER_SCRIPT, limit, holder_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == 0


# -- a global limit held by another process ----------------------------------------------
def test_run_waiting_on_a_limit_held_by_another_process(
    client: Client, holder_process: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    client.create_limit("db", 1)
    holder = new_run(client, "holder-run")
    first = new_run(client, "first-waiter")
    second = new_run(client, "second-waiter")
    proc = holder_process("db", holder)
    w1 = Waiter(client, ["db"], first)
    wait_until(waiting_on(client, first))
    w2 = Waiter(client, ["db"], second, priority=0)
    wait_until(waiting_on(client, second))

    answer = client.explain_run(second)
    assert answer.kind == "flow_run" and answer.name == "second-waiter"
    assert answer.waiting and answer.limited
    assert answer.state is not None and answer.state.type is StateType.RUNNING
    (block,) = answer.blockers
    assert (block.limit_name, block.scope, block.limit) == ("db", "global", 1)
    assert block.active_slots == 1
    (held,) = block.holders
    assert held.run_id == holder and held.name == "holder-run"
    assert held.pid == proc.pid and held.host == socket.gethostname()
    assert held.kind == "code" and held.slots == 1
    assert (block.position, block.waiters_ahead, block.waiting) == (2, 1, 2)
    assert [(a.position, a.run_id, a.name) for a in block.ahead] == [(1, first, "first-waiter")]
    assert block.strategy.startswith("WAIT")
    assert block.waiting_since is not None and block.waiting_since >= held.since
    # Nothing has been given back yet: no average hold time, no estimate (and it says so).
    assert block.estimated_start is None and "no slot" in block.estimate
    assert "'db'" in answer.summary

    assert client.explain_run(first).blockers[0].position == 1
    holder_answer = client.explain_run(holder)
    assert not holder_answer.waiting
    assert [(h.limit_name, h.slots) for h in holder_answer.holds] == [("db", 1)]

    release(proc)
    client.release_slots(w1.finish().lease_id)
    grant = w2.finish()
    # Two leases were given back: the estimate now has an average hold time to go on.
    client.release_slots(grant.lease_id)
    client.set_flow_run_state(second, Completed())
    done = client.explain_run(second)
    assert not done.waiting and done.blockers == ()
    assert done.state is not None and done.state.type is StateType.COMPLETED
    assert [w.limit_name for w in done.waited] == ["db"]
    assert done.waited[0].what == "slot" and done.waited[0].seconds > 0
    assert done.total_wait_seconds == pytest.approx(done.waited[0].seconds)
    assert "ended COMPLETED" in done.summary and "waited" in done.summary


def test_estimate_uses_the_average_hold_time(client: Client) -> None:
    client.create_limit("api", 1)
    for _ in range(3):
        grant = client.acquire_slots(["api"], 1)
        assert isinstance(grant, SlotGrant)
        client.release_slots(grant.lease_id)
    holder = client.acquire_slots(["api"], 1, holder_id="holder")
    assert isinstance(holder, SlotGrant)
    run = new_run(client, "estimated")
    waiter = Waiter(client, ["api"], run)
    wait_until(waiting_on(client, run))
    block = client.explain_run(run).blockers[0]
    stats = {s.name: s for s in client.limit_stats()}["api"]
    assert stats.releases == 3 and stats.average_hold_seconds is not None
    assert block.average_hold_seconds == pytest.approx(stats.average_hold_seconds)
    assert block.estimated_start is not None
    assert "average hold time" in block.estimate
    client.release_slots(holder.lease_id)
    client.release_slots(waiter.finish().lease_id)


# -- deployments, pools, tags --------------------------------------------------------------
def deploy(client: Client, name: str = "d", **fields: Any) -> str:
    spec = DeploymentSpec(
        flow_name="flow", name=name, entrypoint="/nowhere/flows.py:flow", work_pool="pool",
        **fields,
    )  # fmt: skip
    return client.apply_deployment(spec).full_name


def claim(client: Client, limit: int = 10) -> list[str]:
    worker = client.register_worker("pool", f"w-{uuid.uuid4().hex[:6]}")
    assert worker.id is not None
    return [c.run.id for c in client.claim_flow_runs(worker.id, pool="pool", limit=limit)]


def test_enqueue_deployment_with_two_waiting_runs(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client, concurrency_limit=1, collision_strategy="ENQUEUE")
    runs = [client.create_deployment_run(full).id for _ in range(3)]
    assert claim(client) == runs[:1]
    for run_id, position in ((runs[1], 1), (runs[2], 2)):
        answer = client.explain_run(run_id)
        assert answer.state is not None and answer.state.name == AWAITING_CONCURRENCY_SLOT
        assert answer.deployment == full and answer.waiting
        (block,) = answer.blockers
        assert block.limit_name == f"deployment:{full}" and block.scope == "deployment"
        assert block.strategy == "ENQUEUE"
        assert (block.position, block.waiting) == (position, 2)
        assert [h.run_id for h in block.holders] == [runs[0]]
        assert block.holders[0].kind == "flow_run"
        assert [a.run_id for a in block.ahead] == runs[1:position]
    # The first run ends: the second is claimed, the third moves up.
    client.set_flow_run_state(runs[0], Completed())
    assert claim(client) == [runs[1]]
    assert client.explain_run(runs[2]).blockers[0].position == 1
    client.set_flow_run_state(runs[1], Running())
    client.set_flow_run_state(runs[1], Completed())
    done = client.explain_run(runs[1])
    assert not done.waiting
    whats = {w.what for w in done.waited}
    assert {AWAITING_CONCURRENCY_SLOT, "claim"} <= whats
    awaited = next(w for w in done.waited if w.what == AWAITING_CONCURRENCY_SLOT)
    assert awaited.limit_name == f"deployment:{full}"
    assert done.total_wait_seconds is not None and done.total_wait_seconds > 0


def test_run_waiting_on_a_work_pool_limit(client: Client) -> None:
    client.create_work_pool("pool", concurrency_limit=1)
    full = deploy(client)
    runs = [client.create_deployment_run(full).id for _ in range(2)]
    assert claim(client) == runs[:1]
    answer = client.explain_run(runs[1])
    assert answer.waiting
    (block,) = answer.blockers
    assert block.limit_name == "pool:pool" and block.scope == "pool"
    assert [h.run_id for h in block.holders] == [runs[0]]
    assert block.position == 1
    # The deployment itself has no limit: the run would overlap but for the pool.
    assert any("no concurrency limit" in d for d in answer.details)
    waiting = {w.run_id: w for w in client.status().waiting}
    assert waiting[runs[1]].limit_name == "pool:pool" and waiting[runs[1]].kind == "flow_run"


def test_every_due_run_of_a_full_work_pool_waits_on_it(client: Client) -> None:
    # A claim marks AwaitingConcurrencySlot only on the run it tried; one created after
    # the pool filled (the next claim stops at the full pool) or queued behind it is not
    # marked, and `headway why` answered "no limit in its way" for them.
    client.create_work_pool("pool", concurrency_limit=1)
    full = deploy(client)
    first = client.create_deployment_run(full).id
    assert claim(client) == [first]
    later = [client.create_deployment_run(full).id for _ in range(2)]
    assert claim(client) == []
    for position, run_id in enumerate(later, 1):
        answer = client.explain_run(run_id)
        assert answer.waiting, answer.summary
        (block,) = answer.blockers
        assert block.limit_name == "pool:pool" and block.scope == "pool"
        assert [h.run_id for h in block.holders] == [first]
        assert (block.position, block.waiting) == (position, 2)
    # A run not due yet waits for its time, not for the pool.
    soon = client.create_deployment_run(
        full, scheduled_time=datetime.now(UTC) + timedelta(hours=1)
    ).id
    assert client.explain_run(soon).blockers == ()


def test_due_run_with_no_limit_waits_for_a_worker(client: Client) -> None:
    client.create_work_pool("pool")
    full = deploy(client)
    run_id = client.create_deployment_run(full).id
    answer = client.explain_run(run_id)
    assert not answer.waiting and not answer.limited and answer.blockers == ()
    assert "waits for a worker of work pool 'pool'" in answer.summary
    assert "not limited" in answer.summary
    assert any("work pool 'pool': no limit configured" in d for d in answer.details)


def test_task_run_waiting_on_a_tag_limit(client: Client) -> None:
    client.create_limit("tag:gpu", 1)
    flow_run = new_run(client, "flow-with-tasks")
    holder_task, waiting_task = str(uuid.uuid4()), str(uuid.uuid4())
    now = time.time()
    client.record_task_runs(
        [
            TaskRunRecord(t, flow_run, name, f"{name}-key", ("gpu",), now, (Pending(),))
            for t, name in ((holder_task, "train"), (waiting_task, "infer"))
        ]
    )
    held = client.acquire_slots(["tag:gpu"], 1, holder_kind="task_run", holder_id=holder_task)
    assert isinstance(held, SlotGrant)
    waiter = Waiter(client, ["tag:gpu"], waiting_task, holder_kind="task_run")
    wait_until(waiting_on(client, waiting_task))
    answer = client.explain_run(waiting_task)
    assert answer.kind == "task_run" and answer.name == "infer"
    (block,) = answer.blockers
    assert (block.limit_name, block.scope, block.position) == ("tag:gpu", "tag", 1)
    assert [(h.kind, h.run_id, h.name) for h in block.holders] == [
        ("task_run", holder_task, "train")
    ]
    client.release_slots(held.lease_id)
    client.release_slots(waiter.finish().lease_id)


def test_flow_run_whose_tagged_task_waits(client: Client) -> None:
    from headway import flow, task
    from headway.context import get_flow_run_context

    client.create_limit("tag:gpu", 1)
    held = client.acquire_slots(["tag:gpu"], 1, holder_id="another-job")
    assert isinstance(held, SlotGrant)
    ids: list[str] = []
    started = threading.Event()

    @task(tags=["gpu"])
    def infer() -> int:
        return 1

    @flow
    def pipeline() -> int:
        ctx = get_flow_run_context()
        assert ctx is not None
        ids.append(ctx.flow_run_id)
        started.set()
        return infer()

    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(pipeline()), daemon=True)
    thread.start()
    assert started.wait(30)
    wait_until(lambda: "wait for a slot" in client.explain_run(ids[0]).summary)
    answer = client.explain_run(ids[0])
    assert not answer.waiting  # the flow run goes on; its task waits
    line = next(d for d in answer.details if "waits for 'tag:gpu'" in d)
    task_run_id = line.rsplit("headway why ", 1)[1]
    task_answer = client.explain_run(task_run_id)
    assert task_answer.kind == "task_run" and task_answer.name is not None
    assert [b.limit_name for b in task_answer.blockers] == ["tag:gpu"]
    assert [h.run_id for h in task_answer.blockers[0].holders] == ["another-job"]
    client.release_slots(held.lease_id)
    thread.join(30)
    assert results == [1]


def test_unlimited_run_says_so_and_why(client: Client) -> None:
    run_id = new_run(client, "free", tags=("etl",))
    answer = client.explain_run(run_id)
    assert not answer.waiting and not answer.limited and answer.blockers == ()
    assert "not limited" in answer.summary and "default" in answer.summary
    assert any("tag 'etl'" in d and "no limit configured" in d for d in answer.details)
    # A tag limit that exists makes the run limited, though nothing is in its way.
    client.create_limit("tag:etl", 2)
    limited = client.explain_run(run_id)
    assert limited.limited and not limited.waiting and "not limited" not in limited.summary


def test_finished_run_that_never_waited(client: Client) -> None:
    run_id = new_run(client, "quick")
    client.set_flow_run_state(run_id, Completed())
    answer = client.explain_run(run_id)
    assert answer.state is not None and answer.state.type is StateType.COMPLETED
    assert "never waited" in answer.summary and answer.waited == ()


def test_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(exceptions.ObjectNotFound):
        client.explain_run(str(uuid.uuid4()))


# -- a deployment's policy -----------------------------------------------------------------
def test_explain_deployment_layer_by_layer(client: Client) -> None:
    client.create_work_pool("pool", concurrency_limit=4)
    client.create_limit("tag:nightly", 2)
    full = deploy(client, concurrency_limit=1, collision_strategy="CANCEL_NEW", tags=("nightly",))
    answer = client.explain_deployment(full)
    layers = {layer.layer: layer for layer in answer.layers}
    assert layers["work pool"].limit == 4 and layers["work pool"].limit_name == "pool:pool"
    assert layers["work queue"].limit is None and "unlimited" in layers["work queue"].detail
    assert layers["deployment"].limit == 1 and "CANCEL_NEW" in layers["deployment"].detail
    assert layers["tag"].name == "nightly" and layers["tag"].limit == 2
    assert answer.collision_strategy == "CANCEL_NEW"
    assert "cancelled at once" in answer.on_collision
    assert any("known only when the code runs" in n for n in answer.notes)
    client.set_deployment_concurrency_limit(full, None)
    overlap = client.explain_deployment(full)
    assert "overlap" in overlap.on_collision
    assert {layer.layer: layer for layer in overlap.layers}["deployment"].limit is None
    with pytest.raises(exceptions.ObjectNotFound):
        client.explain_deployment("flow/nope")
    with pytest.raises(exceptions.ValidationError):
        client.explain_deployment("no-slash")


def test_explanations_are_json_ready(client: Client) -> None:
    from headway.core.models import to_jsonable

    run_id = new_run(client, "json", state=State(StateType.PENDING))
    body = to_jsonable(client.explain_run(run_id))
    assert body["run_id"] == run_id and isinstance(body["summary"], str)
    assert isinstance(client.explain_run(run_id), RunExplanation)
