"""Tasks through the public API: calls, futures, map, retries, timeouts and their records."""

from __future__ import annotations

import asyncio
import threading
from collections import namedtuple
from typing import Any

import pytest

from headway import flow, task, unmapped
from headway.client.base import Client, get_client
from headway.context import get_flow_run_context, get_task_run_context
from headway.core.states import StateType
from headway.exceptions import RunCancelled, TaskRunTimeout, ValidationError
from headway.futures import FutureList, TaskFuture, wait
from headway.task_runners import ThreadPoolTaskRunner
from helpers.waiting import wait_until

S = StateType


def _flow_run_id() -> str:
    ctx = get_flow_run_context()
    assert ctx is not None
    return ctx.flow_run_id


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
def total(values: Any) -> int:
    return sum(values)


def test_calls_submits_and_maps_are_recorded_task_runs(client: Client) -> None:
    @flow
    def pipeline() -> tuple[int, int, list[int], str]:
        direct = add(1)
        future = add.submit(2, y=5)
        mapped = add.map([1, 2, 3], y=unmapped(10))
        return direct, future.result(), mapped.result(), _flow_run_id()

    direct, submitted, mapped, run_id = pipeline()
    assert (direct, submitted, mapped) == (2, 7, [11, 12, 13])
    runs = client.read_task_runs(run_id)
    assert sorted(t.name for t in runs) == ["add-0", "add-1", "add-2", "add-3", "add-4"]
    assert {t.state.type for t in runs} == {S.COMPLETED}
    assert {t.flow_run_id for t in runs} == {run_id}
    assert all(t.task_key.endswith("test_tasks.add") for t in runs)
    for t in runs:
        assert t.start_time is not None and t.end_time is not None and t.run_count == 1
        assert [s.type for s in client.read_states(t.id)] == [S.PENDING, S.RUNNING, S.COMPLETED]


def test_every_task_run_is_in_the_store_when_the_flow_returns(client: Client) -> None:
    @task
    def noop(i: int) -> int:
        return i

    @flow
    def many() -> str:
        futures = [noop.submit(i) for i in range(300)]
        for i in range(200):
            noop(i)
        assert [f.result() for f in futures] == list(range(300))
        return _flow_run_id()

    run_id = many()
    runs = client.read_task_runs(run_id)
    assert len(runs) == 500
    assert {t.state.type for t in runs} == {S.COMPLETED}
    assert len({t.id for t in runs}) == 500


def test_futures_inside_arguments_are_replaced_by_their_results() -> None:
    Pair = namedtuple("Pair", "left right")

    @task
    def echo(value: Any) -> Any:
        return value

    @flow
    def nested() -> Any:
        a, b = add.submit(1), add.submit(2)
        return echo(
            {"list": [a, b], "tuple": (a,), "set": {b}, "dict": {"k": a}, "pair": Pair(a, 5)}
        ), total.submit([a, b, 10]).result()

    shaped, summed = nested()
    assert shaped == {"list": [2, 3], "tuple": (2,), "set": {3}, "dict": {"k": 2}, "pair": (2, 5)}
    assert type(shaped["pair"]).__name__ == "Pair"
    assert summed == 15


def test_wait_for_orders_runs_without_passing_results() -> None:
    order: list[str] = []
    gate = threading.Event()

    @task
    def first() -> None:
        gate.wait(10)
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    later = threading.Event()

    @task
    def held() -> None:
        later.wait(10)

    @flow
    def ordered() -> tuple[str, Any]:
        a = first.submit()
        b = second.submit(wait_for=[a])
        gate.set()
        b.result()
        c = held.submit()
        threading.Timer(0.05, later.set).start()
        return c.task_run_id, second(wait_for=[c], return_state=True)  # a direct call waits

    held_id, direct = ordered()
    assert order == ["first", "second", "second"]
    client = get_client()
    held_done = client.read_task_run(held_id).end_time
    direct_run = client.read_task_runs(client.read_task_run(held_id).flow_run_id or "")
    started = next(t.start_time for t in direct_run if t.name == "second-1")
    assert direct.is_completed() and held_done is not None and started is not None
    assert started >= held_done  # it began only once the run it waited for had ended


def test_a_run_whose_upstream_failed_does_not_start(client: Client) -> None:
    ran: list[str] = []

    @task
    def boom() -> int:
        raise ValueError("upstream broke")

    @task
    def downstream(x: int) -> None:
        ran.append("downstream")

    @flow
    def broken_chain() -> tuple[Any, Any, str]:
        up = boom.submit()
        by_value = downstream.submit(up)
        by_order = downstream.submit(1, wait_for=[up])
        assert wait([by_value, by_order], timeout=10).not_done == set()
        return by_value.state, by_order.state, _flow_run_id()

    with pytest.raises(RunCancelled, match="upstream task run 'boom-0' ended Failed"):
        # The flow waits on nothing that raises; reading the results raises.
        @flow
        def reads() -> None:
            downstream.submit(boom.submit()).result()

        reads()
    by_value, by_order, run_id = broken_chain()
    assert ran == []
    for state in (by_value, by_order):
        assert state.type is S.CANCELLED and state.name == "UpstreamFailed"
        assert "ValueError: upstream broke" in state.message
    names = {t.name: (t.state.type, t.state.name) for t in client.read_task_runs(run_id)}
    assert names["boom-0"] == (S.FAILED, "Failed")
    assert names["downstream-0"] == (S.CANCELLED, "UpstreamFailed")


def test_task_retries_are_recorded_and_the_last_failure_is_final(client: Client) -> None:
    attempts: list[int] = []

    @task(retries=3, retry_delay_seconds=[0, 0.01])
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    @task(retries=1)
    def hopeless() -> None:
        raise ValueError("never")

    @flow
    def retrying() -> tuple[str, Any, str]:
        return flaky(), hopeless(return_state=True), _flow_run_id()

    value, failed, run_id = retrying()
    assert value == "ok" and len(attempts) == 3
    assert failed.type is S.FAILED and failed.message == "ValueError: never"
    runs = {t.name: t for t in client.read_task_runs(run_id)}
    assert runs["flaky-0"].run_count == 3 and runs["flaky-0"].state.type is S.COMPLETED
    assert [(s.type, s.name) for s in client.read_states(runs["flaky-0"].id)] == [
        (S.PENDING, "Pending"),
        (S.RUNNING, "Running"),
        (S.SCHEDULED, "AwaitingRetry"),
        (S.RUNNING, "Retrying"),
        (S.SCHEDULED, "AwaitingRetry"),
        (S.RUNNING, "Retrying"),
        (S.COMPLETED, "Completed"),
    ]
    assert runs["hopeless-0"].state.type is S.FAILED and runs["hopeless-0"].run_count == 2


def test_a_task_past_its_timeout_fails_with_task_run_timeout() -> None:
    release = threading.Event()

    @task(timeout_seconds=0.2)
    def stuck() -> None:
        # Blocked in C, far past the timeout; not longer: under a tracer (coverage)
        # CPython 3.11 leaves the other threads spinning, unable to call a function,
        # until the timeout's exception reaches this thread (fixed in 3.12).
        release.wait(2)

    @flow
    def timing_out() -> tuple[Any, Any]:
        inline = stuck(return_state=True)
        submitted = stuck.submit()
        submitted.wait()
        return inline, submitted.state

    try:
        inline, submitted = timing_out()
    finally:
        release.set()
    for state in (inline, submitted):
        assert state.type is S.FAILED
        assert state.message.startswith("TaskRunTimeout: task run 'stuck-")
        with pytest.raises(TaskRunTimeout):
            state.result()


def test_a_task_called_outside_a_flow_runs_and_is_recorded_without_a_flow_run(
    client: Client,
) -> None:
    @task
    def standalone() -> str:
        ctx = get_task_run_context()
        assert ctx is not None and ctx.flow_run_id is None
        return ctx.task_run_id

    task_run_id = standalone()
    run = client.read_task_run(task_run_id)
    assert run.flow_run_id is None
    assert run.state.type is S.COMPLETED
    assert [s.type for s in client.read_states(task_run_id)] == [S.PENDING, S.RUNNING, S.COMPLETED]


def test_submit_outside_a_flow_uses_the_shared_runner() -> None:
    future = add.submit(40, y=2)
    assert future.result(timeout=10) == 42
    assert get_client().read_task_run(future.task_run_id).state.type is S.COMPLETED


def test_future_api() -> None:
    release = threading.Event()

    @task
    def gated() -> str:
        release.wait(10)
        return "done"

    @flow
    def using_futures() -> None:
        future = gated.submit()
        assert isinstance(future, TaskFuture)
        with pytest.raises(TimeoutError):
            future.result(timeout=0.05)
        assert not future.done()
        assert future.state.type in {S.PENDING, S.RUNNING}
        release.set()
        assert future.wait(10) is True and future.done()
        assert future.result() == "done"
        assert future.state.type is S.COMPLETED
        assert "gated-0" in repr(future)
        mapped = add.map(range(3))
        assert isinstance(mapped, FutureList)
        assert mapped.wait(10) and mapped.result() == [1, 2, 3]
        done, not_done = wait(mapped, timeout=10)
        assert len(done) == 3 and not not_done

    using_futures()


def test_map_arguments_are_checked_before_anything_runs() -> None:
    @task
    def pair(x: Any, label: Any) -> tuple[Any, Any]:
        return x, label

    @flow
    def maps() -> list[tuple[Any, Any]]:
        with pytest.raises(ValidationError, match="different lengths"):
            add.map([1, 2], y=[1, 2, 3])
        with pytest.raises(ValidationError, match="at least one iterable"):
            add.map(1, y=2)
        with pytest.raises(ValidationError, match="at least one iterable"):
            total.map("abc")  # strings (and bytes, mappings) are passed whole
        return (
            pair.map([1, 2], label="ab").result() + pair.map([3], label=unmapped([7, 8])).result()
        )

    assert maps() == [(1, "ab"), (2, "ab"), (3, [7, 8])]
    assert len(get_client().list_flow_runs(flow_name="maps", limit=5)) == 1


def test_map_over_a_future_maps_its_result() -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @flow
    def chained() -> list[int]:
        return add.map(numbers.submit(), y=unmapped(100)).result()

    assert chained() == [101, 102, 103]


def test_a_task_that_waits_on_its_own_submissions_never_deadlocks_one_worker() -> None:
    @task
    def child(i: int) -> int:
        return i * 10

    @task
    def parent(n: int) -> int:
        futures = [child.submit(i) for i in range(n)]
        return sum(f.result() for f in futures)

    @task
    async def async_parent(n: int) -> int:
        futures = [child.submit(i) for i in range(n)]
        return sum([await f for f in futures])

    @task
    async def async_child(i: int) -> int:
        await asyncio.sleep(0)
        return i + 1

    @task
    async def async_parent_blocking(n: int) -> int:
        # A blocking .result() inside a running loop, on async tasks no worker started:
        # they run on a helper thread (this thread's loop is busy) instead of deadlocking.
        return sum(async_child.submit(i).result() for i in range(n))

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def one_worker() -> tuple[int, int, int, int]:
        sync_parent = parent.submit(4)
        grand = parent.submit(3)
        return (
            sync_parent.result(),
            grand.result(),
            async_parent.submit(3).result(),
            async_parent_blocking.submit(3).result(),
        )

    assert one_worker() == (60, 30, 30, 6)


def test_async_tasks_submitted_from_sync_and_async_flows() -> None:
    @task
    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.001)
        return 2 * x

    @flow
    def sync_flow() -> list[int]:
        return slow_double.map([1, 2, 3]).result()

    @flow
    async def async_flow() -> list[int]:
        futures = [slow_double.submit(i) for i in range(3)]
        awaited = [await f for f in futures]
        direct = await slow_double(10)
        return [*awaited, direct]

    assert sync_flow() == [2, 4, 6]
    assert asyncio.run(async_flow()) == [0, 2, 4, 20]


def test_a_long_task_is_visible_as_running_before_it_ends(client: Client) -> None:
    started = threading.Event()
    release = threading.Event()
    seen: dict[str, Any] = {}

    @task
    def long_one() -> None:
        started.set()
        release.wait(20)

    @flow
    def observed() -> None:
        future = long_one.submit()
        assert started.wait(10)

        # The recorder writes in the background: wait until the store shows RUNNING.
        def running() -> bool:
            try:
                state = client.read_task_run(future.task_run_id).state
            except Exception:
                return False
            return state.type is S.RUNNING

        try:
            wait_until(running, "the store shows the task RUNNING")
            seen["running"] = True
        finally:
            release.set()

    try:
        observed()
    finally:
        release.set()
    assert seen.get("running") is True


def test_tags_hold_slots_only_for_tagged_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    import headway.concurrency.tags as tags_module

    calls: list[dict[str, Any]] = []

    class Holder:
        def __enter__(self) -> None:
            calls[-1]["entered_while"] = get_client().read_task_run(calls[-1]["id"]).state.type

        def __exit__(self, *exc: object) -> None:
            calls[-1]["exited"] = True

    def fake_hold(client: Any, tags: Any, *, task_run_id: str, flow_run_id: str | None) -> Any:
        calls.append({"tags": tuple(tags), "id": task_run_id, "flow_run_id": flow_run_id})
        return Holder()

    monkeypatch.setattr(tags_module, "hold_tag_slots", fake_hold)

    @task(tags=["db", "db", "api"])
    def tagged() -> str:
        return "tagged"

    @flow
    def with_tags() -> str:
        assert add(1) == 2  # no tags: never asks for slots
        assert tagged() == "tagged"
        assert tagged.submit().result() == "tagged"
        return _flow_run_id()

    run_id = with_tags()
    assert [c["tags"] for c in calls] == [("db", "api"), ("db", "api")]
    assert all(c["flow_run_id"] == run_id for c in calls)
    assert all(c["entered_while"] is S.PENDING and c["exited"] for c in calls)


def test_task_options_are_validated_and_decorator_forms_work() -> None:
    def f(x: int) -> int:
        return x

    bare, named = task(f), task(name="renamed", retries=2, tags=["a"])(f)
    assert bare.name == "f" and named.name == "renamed" and named.tags == ("a",)
    assert bare(3) == 3 and named(4) == 4
    assert named.with_options(retries=0).retries == 0
    with pytest.raises(ValidationError, match="tags"):
        task(tags="db")(f)
    with pytest.raises(ValidationError, match="retries"):
        task(retries=1.5)(f)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown task option"):
        bare.with_options(colour="red")
    with pytest.raises(ValidationError, match="at most 190 characters"):
        task(name="x" * 191)(f)
    with pytest.raises(ValidationError, match="non-empty"):
        task(name=" ")(f)
    state = bare(5, return_state=True)
    assert state.is_completed() and state.result() == 5  # type: ignore[attr-defined]


def test_async_tasks_retry_time_out_and_wait_for_upstream(client: Client) -> None:
    attempts: list[int] = []

    @task(retries=1, retry_delay_seconds=0)
    async def flaky_async() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first")
        return 5

    @task(timeout_seconds=0.1)
    async def too_slow() -> None:
        await asyncio.sleep(10)

    @task
    async def plus(x: int, y: int) -> int:
        return x + y

    @flow
    async def async_pipeline() -> tuple[int, Any, int, str]:
        first = await flaky_async()
        timed_out = await too_slow(return_state=True)
        upstream = add.submit(1)  # a sync task in the pool, awaited by an async one
        summed = await plus(upstream, 10)
        return first, timed_out, summed, _flow_run_id()

    first, timed_out, summed, run_id = asyncio.run(async_pipeline())
    assert (first, summed) == (5, 12)
    assert timed_out.type is S.FAILED and timed_out.message.startswith("TaskRunTimeout")
    runs = {t.name: t for t in client.read_task_runs(run_id)}
    assert runs["flaky_async-0"].run_count == 2
    assert runs["flaky_async-0"].state.type is S.COMPLETED
    assert runs["too_slow-0"].state.type is S.FAILED


def test_a_task_that_cannot_get_its_slots_fails_and_one_that_cannot_give_them_back_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import headway.concurrency.tags as tags_module
    from headway.exceptions import ConcurrencySlotAcquisitionError

    class Refused:
        def __enter__(self) -> None:
            raise ConcurrencySlotAcquisitionError("limit tag:db is disabled")

        def __exit__(self, *exc: object) -> None:
            raise AssertionError("never entered")

    class LostOnRelease:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            raise ConnectionError("store went away")

    holders = iter([Refused(), LostOnRelease()])
    monkeypatch.setattr(tags_module, "hold_tag_slots", lambda *a, **k: next(holders))

    @task(tags=["db"])
    def tagged() -> str:
        return "ran"

    @flow
    def slots() -> tuple[Any, Any]:
        return tagged(return_state=True), tagged(return_state=True)

    refused, released = slots()
    assert refused.type is S.FAILED
    assert refused.message.startswith("could not acquire concurrency slots for tags ['db']")
    assert released.type is S.COMPLETED and released.result() == "ran"


def test_a_flow_run_keeps_no_finished_future_or_result_alive() -> None:
    import gc
    import weakref

    from headway._engine.recorder import get_recorder

    class Payload:
        pass

    refs: list[weakref.ref[Payload]] = []

    @task
    def make() -> Payload:
        payload = Payload()
        refs.append(weakref.ref(payload))
        return payload

    @flow
    def many_fire_and_forget() -> tuple[int, int]:
        for _ in range(20):
            make.submit().wait()  # the caller drops each future at once
        ctx = get_flow_run_context()
        assert ctx is not None
        get_recorder().flush()  # the recorder lets go of runs it has written
        gc.collect()
        return len(ctx.futures), sum(ref() is not None for ref in refs)

    assert many_fire_and_forget() == (0, 0)
