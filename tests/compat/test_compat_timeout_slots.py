"""A run that times out gives its slots back at the timeout, as Prefect's do.

A sync task's body runs in a helper thread; at the deadline the run ends FAILED
and the body is interrupted at its next bytecode, so its ``with`` block exits
and releases. A body blocked in C code cannot be interrupted until the call
returns: it keeps its slots until then (documented in
docs/coming-from-prefect.md), because it still does the work they guard.

Nothing here waits on the wall clock to decide an outcome: each "is it free
now?" is a request that is granted as soon as the slot is released (by
notification), with a bound far beyond the body's own run time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from headway import flow, task
from headway.client.base import Client, get_client
from headway.concurrency import asyncio as aio
from headway.concurrency import sync
from headway.concurrency.v1 import sync as v1_sync
from headway.core.states import State
from headway.exceptions import ConcurrencySlotAcquisitionError, TaskRunTimeout

#: A run's timeout: short, as the bodies below outlive it by far.
TIMEOUT = 0.3
#: How long a body would hold its slot if it were not interrupted.
BODY_SECONDS = 30.0
#: The bound on "the slot comes back": far below BODY_SECONDS.
GRANT_WITHIN = 10.0


@pytest.fixture
def client() -> Client:
    client = get_client()
    client.create_limit("test", 1)
    client.create_limit("tag:test", 1)
    return client


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Holds a body blocked in C code; always opened, so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


def spin(seconds: float) -> None:
    """Python bytecode for ``seconds``: interruptible at any point."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def run_task_in_flow(fn: task) -> State:  # type: ignore[valid-type]
    @flow
    def my_flow() -> State:
        return fn(return_state=True)  # type: ignore[no-any-return, operator]

    return my_flow()


def assert_timed_out(state: State) -> None:
    assert state.is_failed()
    with pytest.raises(TaskRunTimeout):
        state.result()


def assert_free(name: str) -> None:
    """The slot is (or very soon becomes) free: a waiting request is granted."""
    with sync.concurrency(name, timeout_seconds=GRANT_WITHIN):
        pass


def assert_taken(name: str) -> None:
    """The slot is still held: one attempt is refused."""
    with pytest.raises(ConcurrencySlotAcquisitionError), sync.concurrency(name, max_retries=0):
        raise AssertionError("the slot should still be held")


def test_interrupted_sync_body_releases_its_global_slot(client: Client) -> None:
    """Prefect: ``test_concurrency_context_releases_slots_sync``
    in tests/concurrency/v1/test_context.py (a busy loop past the timeout).

    Here with Prefect's v2 ``concurrency()``: the slot is held while the body
    runs, and back at the timeout, not when the loop would have ended."""
    seen: list[float] = []

    @task(timeout_seconds=TIMEOUT)
    def expensive_task() -> None:
        with sync.concurrency("test"):
            seen.append(client.read_limit("test").active_slots)
            spin(BODY_SECONDS)

    assert_timed_out(run_task_in_flow(expensive_task))
    assert seen == [1]
    assert_free("test")


def test_interrupted_sync_body_releases_its_v1_tag_slot(client: Client) -> None:
    """Prefect: ``test_concurrency_context_releases_slots_sync``
    in tests/concurrency/v1/test_context.py."""
    task_run_id = uuid.UUID("00000000-0000-0000-0000-000000000000")
    holders: list[list[str | None]] = []

    @task(timeout_seconds=TIMEOUT)
    def expensive_task() -> None:
        with v1_sync.concurrency("test", task_run_id):
            holders.append([h.holder.id for h in client.inspect_limit("tag:test").holders])
            spin(BODY_SECONDS)

    assert_timed_out(run_task_in_flow(expensive_task))
    assert holders == [[str(task_run_id)]]
    with v1_sync.concurrency("test", uuid.uuid4(), timeout_seconds=GRANT_WITHIN):
        pass


def test_timed_out_async_body_releases_its_slot(client: Client) -> None:
    """Prefect: ``test_concurrency_context_releases_slots_async``
    in tests/concurrency/test_context.py."""
    seen: list[float] = []

    @task(timeout_seconds=TIMEOUT)
    async def expensive_task() -> None:
        async with aio.concurrency("test"):
            seen.append(await asyncio.to_thread(lambda: client.read_limit("test").active_slots))
            await asyncio.sleep(BODY_SECONDS)

    @flow
    async def my_flow() -> State:
        return await expensive_task(return_state=True)  # type: ignore[no-any-return]

    assert_timed_out(asyncio.run(my_flow()))
    assert seen == [1]
    assert_free("test")


def test_slots_a_body_left_held_are_released_when_it_ends(client: Client) -> None:
    """Prefect: ``test_concurrency_context_releases_slots_sync``
    in tests/concurrency/test_context.py (Prefect's ConcurrencyContext releases
    the leases a cancelled body could not).

    The body takes a slot outside any ``with`` (as if the interrupt had landed
    between the grant and the block that would hold it); once the interrupted
    body has ended, the slot is released for it."""

    @task(timeout_seconds=TIMEOUT)
    def expensive_task() -> None:
        sync.concurrency("test").__enter__()
        spin(BODY_SECONDS)

    assert_timed_out(run_task_in_flow(expensive_task))
    assert_free("test")


def test_a_body_blocked_in_c_code_keeps_its_slots_until_it_returns(
    client: Client, gate: threading.Event
) -> None:
    """Prefect: ``test_concurrency_context_releases_slots_sync``
    in tests/concurrency/test_context.py (there ``time.sleep`` in the main
    thread is cut short by a signal).

    A deliberate difference: the run ends FAILED at its timeout, but a body
    blocked in C code (here a wait on an event) still runs and keeps both its
    own slot and the task's tag slot until the call returns; then both are
    released. Freeing them earlier would let a second body in while the first
    still works."""
    entered = threading.Event()

    @task(timeout_seconds=TIMEOUT, tags=["test"])
    def expensive_task() -> None:
        with sync.concurrency("test"):
            entered.set()
            gate.wait()

    assert_timed_out(run_task_in_flow(expensive_task))
    assert entered.is_set()
    assert_taken("test")
    assert_taken("tag:test")
    gate.set()
    assert_free("test")
    assert_free("tag:test")


def test_a_body_that_ends_in_time_keeps_nothing_and_loses_nothing(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow``
    in tests/concurrency/test_concurrency_sync.py, with a timeout that is not reached.

    The slot is released by the block as usual; the task completes."""

    @task(timeout_seconds=GRANT_WITHIN, tags=["test"])
    def resource_heavy() -> float:
        with sync.concurrency("test"):
            return client.read_limit("test").active_slots

    state = run_task_in_flow(resource_heavy)
    assert state.is_completed() and state.result() == 1
    assert client.read_limit("test").active_slots == 0
    assert client.read_limit("tag:test").active_slots == 0
