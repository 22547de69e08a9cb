"""Prefect's ``concurrency()`` and ``rate_limit()`` (sync and asyncio), as headway does them.

Each test checks what the named Prefect test asserts, on headway's embedded
store (a fresh ``HEADWAY_HOME`` per test, from ``tests/conftest.py``). Where
headway deliberately differs, the test says so and docs/coming-from-prefect.md
lists the difference.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headway import flow, task
from headway.client.base import Client, get_client, set_default_client
from headway.client.factory import embedded_client
from headway.concurrency import asyncio as aio
from headway.concurrency import sync
from headway.context import flow_run_var
from headway.core.clock import MovableClock
from headway.exceptions import LeaseLostError
from headway.settings import get_settings

NAME_CASES = pytest.mark.parametrize("names", [[], None], ids=["empty-list", "none"])


class AcquireSpy:
    """Counts the client's slot requests (the store is never asked for no names)."""

    def __init__(self, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = client.acquire_slots

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(client, "acquire_slots", counted)


@pytest.fixture
def client() -> Client:
    return get_client()


@pytest.fixture
def movable() -> Iterator[tuple[Client, MovableClock]]:
    """A default client whose store reads a clock the test can move past a lease."""
    clock = MovableClock()
    local = embedded_client(get_settings(), clock=clock)
    set_default_client(local)
    yield local, clock


# -- 1. no names ----------------------------------------------------------------------
def assert_no_store_was_touched(home: Path) -> None:
    """Nothing asked the store anything: no client was made, no database opened."""
    assert set_default_client(None) is None
    assert not (home / "headway.db").exists()


@pytest.mark.fresh_store  # checks that no store is created
@NAME_CASES
def test_sync_concurrency_without_names_runs_unlimited(
    names: list[str] | None, headway_home: Path
) -> None:
    """Prefect: ``test_concurrency_without_limit_names_sync``
    in tests/concurrency/test_concurrency_sync.py.

    The block runs; nothing is acquired or released."""
    ran = False
    with sync.concurrency(names, occupy=1) as held:
        ran = True
    assert ran
    assert held.lease_id is None and held.names == ()
    assert_no_store_was_touched(headway_home)


@pytest.mark.fresh_store  # checks that no store is created
@NAME_CASES
def test_sync_rate_limit_without_names_returns_at_once(
    names: list[str] | None, headway_home: Path
) -> None:
    """Prefect: ``test_rate_limit_without_limit_names_sync``
    in tests/concurrency/test_concurrency_sync.py."""
    assert sync.rate_limit(names, occupy=1) is None
    assert_no_store_was_touched(headway_home)


@pytest.mark.fresh_store  # checks that no store is created
@NAME_CASES
def test_async_concurrency_without_names_runs_unlimited(
    names: list[str] | None, headway_home: Path
) -> None:
    """Prefect: ``test_concurrency_without_limit_names``
    in tests/concurrency/test_concurrency_asyncio.py."""
    ran: list[bool] = []

    async def main() -> None:
        async with aio.concurrency(names, occupy=1):
            ran.append(True)

    asyncio.run(main())
    assert ran == [True]
    assert_no_store_was_touched(headway_home)


@pytest.mark.fresh_store  # checks that no store is created
@NAME_CASES
def test_async_rate_limit_without_names_returns_at_once(
    names: list[str] | None, headway_home: Path
) -> None:
    """Prefect: ``test_rate_limit_without_limit_names``
    in tests/concurrency/test_concurrency_asyncio.py."""
    asyncio.run(aio.rate_limit(names, occupy=1))
    assert_no_store_was_touched(headway_home)


# -- 4. no such limit: runs unlimited, warns each time ---------------------------------
def test_sync_unknown_limit_runs_without_a_lease_and_warns_every_time(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Prefect: ``test_concurrency_skips_release_and_renewal_when_no_limits_exist``
    in tests/concurrency/test_concurrency_sync.py.

    No lease is taken (so none is renewed or released), the block runs, and
    the "does not exist" warning comes on every acquisition, not once."""
    caplog.set_level(logging.WARNING, logger="headway.concurrency")
    for _ in range(3):
        with sync.concurrency("nonexistent-limit", occupy=1) as held:
            assert held.lease_id is None and held.unknown == ("nonexistent-limit",)
    warnings = [r for r in caplog.records if "nonexistent-limit" in r.getMessage()]
    assert len(warnings) == 3 and all(r.levelno == logging.WARNING for r in warnings)


def test_async_unknown_limit_runs_without_a_lease_and_warns_every_time(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Prefect: ``test_concurrency_skips_release_and_renewal_when_no_limits_exist``
    in tests/concurrency/test_concurrency_asyncio.py."""
    caplog.set_level(logging.WARNING, logger="headway.concurrency")

    async def main() -> None:
        for _ in range(2):
            async with aio.concurrency("nonexistent-limit") as held:
                assert held.lease_id is None

    asyncio.run(main())
    assert sum("nonexistent-limit" in r.getMessage() for r in caplog.records) == 2


def test_unknown_limit_inside_a_task_warns_in_the_run_log_each_run(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow``
    in tests/concurrency/test_concurrency_sync.py, with a limit that does not exist.

    Prefect warns through the run logger when there is one
    (src/prefect/concurrency/_asyncio.py): each task run runs, and each one's
    log says so."""

    @task
    def resource_heavy() -> bool:
        with sync.concurrency("missing-in-run"):
            return True

    @flow
    def my_flow() -> str:
        assert resource_heavy() and resource_heavy()
        ctx = flow_run_var.get()
        assert ctx is not None
        return ctx.flow_run_id

    run_id = my_flow()
    lines = [rec.message for _, rec in client.read_logs(run_id)]
    assert sum("missing-in-run" in line for line in lines) == 2


# -- 5. Prefect's keyword arguments ---------------------------------------------------
def test_sync_timeout_raises_a_timeout_error(client: Client) -> None:
    """Prefect: ``test_concurrency_respects_timeout``
    in tests/concurrency/test_concurrency_sync.py."""
    client.create_limit("test", 1)
    with sync.concurrency("test"):
        with pytest.raises(TimeoutError, match=r"0\.01"):
            with sync.concurrency("test", occupy=1, timeout_seconds=0.01):
                raise AssertionError("should not be executed")
    assert client.read_limit("test").active_slots == 0


def test_async_timeout_raises_a_timeout_error(client: Client) -> None:
    """Prefect: ``test_concurrency_respects_timeout``
    in tests/concurrency/test_concurrency_asyncio.py."""
    client.create_limit("test", 1)

    async def main() -> None:
        async with aio.concurrency("test"):
            with pytest.raises(TimeoutError, match=r"0\.01"):
                async with aio.concurrency("test", occupy=1, timeout_seconds=0.01):
                    raise AssertionError("should not be executed")

    asyncio.run(main())


def test_async_max_retries_zero_gives_up_after_one_refusal(client: Client) -> None:
    """Prefect: ``test_concurrency_respects_max_retries``
    in tests/concurrency/test_concurrency_asyncio.py.

    The limit is full: with ``max_retries=0`` the request is refused once and
    raises ConcurrencySlotAcquisitionError (not a timeout), well before its
    ``timeout_seconds``."""
    client.create_limit("test", 1)

    async def main() -> None:
        async with aio.concurrency("test"):
            with pytest.raises(aio.ConcurrencySlotAcquisitionError) as raised:
                async with aio.concurrency("test", occupy=1, max_retries=0, timeout_seconds=5):
                    raise AssertionError("should not be executed")
            assert not isinstance(raised.value, TimeoutError)

    asyncio.run(main())


def test_sync_max_retries_zero_makes_one_attempt(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect: ``test_max_retries_honored``
    in tests/concurrency/test_concurrency_slot_acquisition_with_lease_service.py.

    Prefect counts 1 + max_retries calls before giving up; with 0 that is one
    call, and nothing is left queued."""
    client.create_limit("test", 1)
    with sync.concurrency("test"):
        spy = AcquireSpy(client, monkeypatch)
        with pytest.raises(sync.ConcurrencySlotAcquisitionError, match="max_retries"):
            with sync.concurrency("test", max_retries=0):
                raise AssertionError("should not be executed")
        assert spy.calls == 1
        assert client.inspect_limit("test").waiters == ()


def test_max_retries_does_not_stop_a_request_that_fits(client: Client) -> None:
    """Prefect: ``test_returns_successful_response``
    in tests/concurrency/test_concurrency_slot_acquisition_with_lease_service.py.

    ``max_retries`` only matters when the limit is full."""
    client.create_limit("test", 1)
    with sync.concurrency("test", max_retries=0) as held:
        assert held.lease_id is not None
        assert client.read_limit("test").active_slots == 1


def test_sync_strict_unknown_limit_fails_the_task(client: Client) -> None:
    """Prefect: ``test_concurrency_strict_within_a_flow``
    in tests/concurrency/test_concurrency_sync.py."""

    @task
    def resource_heavy() -> None:
        with sync.concurrency("doesnt-exist-for-sure", occupy=1, strict=True):
            return

    @flow
    def my_flow() -> None:
        resource_heavy()

    state = my_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(sync.ConcurrencySlotAcquisitionError):
        state.result()


def test_async_strict_unknown_limit_fails_the_task(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow_strictly``
    in tests/concurrency/test_concurrency_asyncio.py."""

    @task
    async def resource_heavy() -> None:
        async with aio.concurrency("doesnt-exist-for-sure", occupy=1, strict=True):
            return

    @flow
    async def my_flow() -> None:
        await resource_heavy()

    state = asyncio.run(my_flow(return_state=True))
    assert state.is_failed()
    with pytest.raises(aio.ConcurrencySlotAcquisitionError):
        state.result()


def test_rate_limit_strict_unknown_limit_fails_the_task(client: Client) -> None:
    """Prefect: ``test_rate_limit_can_be_used_within_a_flow_with_strict``
    in tests/concurrency/test_concurrency_sync.py."""

    @task
    def resource_heavy() -> None:
        sync.rate_limit(["definitely-doesnt-exist"], occupy=1, strict=True)

    @flow
    def my_flow() -> None:
        resource_heavy()

    state = my_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(sync.ConcurrencySlotAcquisitionError):
        state.result()


def test_lease_duration_sets_the_lease(client: Client) -> None:
    """Prefect: ``test_concurrency_orchestrates_api``
    in tests/concurrency/test_concurrency_sync.py.

    Prefect asks for a lease of ``lease_duration`` seconds (300 unless given);
    headway's lease lasts what was asked (its own default when not given)."""
    client.create_limit("test", 1)
    with sync.concurrency("test", occupy=1, lease_duration=120) as held:
        assert held.grant.lease_seconds == 120
        (lease,) = client.inspect_limit("test").holders
        assert 119 <= (lease.expires - lease.created).total_seconds() <= 121
    with sync.concurrency("test") as held:
        assert held.grant.lease_seconds == get_settings().concurrency_lease_seconds


def test_holder_is_recorded_on_the_lease(client: Client) -> None:
    """Prefect: ``test_returns_successful_response``
    in tests/concurrency/test_concurrency_slot_acquisition_with_lease_service.py.

    The holder (type and id) travels with the lease."""
    client.create_limit("test", 10)
    run_id = uuid.uuid4()
    with sync.concurrency("test", holder={"type": "task_run", "id": run_id}):
        (lease,) = client.inspect_limit("test").holders
        assert (lease.holder.kind, lease.holder.id) == ("task_run", str(run_id))

    class LeaseHolder:  # the shape of Prefect's ConcurrencyLeaseHolder
        type = "deployment"
        id = uuid.uuid4()

    async def main() -> None:
        async with aio.concurrency("test", holder=LeaseHolder()):
            (lease,) = client.inspect_limit("test").holders
            assert (lease.holder.kind, lease.holder.id) == ("deployment", str(LeaseHolder.id))

    asyncio.run(main())


def test_lost_lease_with_raise_on_renewal_failure_false_continues(
    movable: tuple[Client, MovableClock],
) -> None:
    """Prefect: ``test_explicit_false_overrides_strict``
    in tests/concurrency/test_raise_on_lease_renewal_failure.py.

    ``raise_on_lease_renewal_failure=False``: a lease lost while the block ran
    does not fail the code. (Left unset, headway raises LeaseLostError when the
    block ends, a deliberate difference: Prefect keeps going unless ``strict``.)"""
    client, clock = movable
    client.create_limit("test", 1)
    lease = get_settings().concurrency_lease_seconds
    with sync.concurrency("test", strict=True, raise_on_lease_renewal_failure=False):
        clock.advance(lease + 1)
        client.sweep_slots()
    assert client.read_limit("test").active_slots == 0
    with pytest.raises(LeaseLostError), sync.concurrency("test"):
        clock.advance(lease + 1)
        client.sweep_slots()


def test_positional_arguments_keep_prefects_order(client: Client) -> None:
    """Prefect: ``test_concurrency_orchestrates_api``
    in tests/concurrency/test_concurrency_sync.py.

    Prefect passes (names, occupy, timeout_seconds, max_retries, lease_duration,
    strict, holder): code that passes them by position means the same here."""
    client.create_limit("test", 2)
    with sync.concurrency("test", 2, 5, None, 90, False) as held:
        assert (held.occupy, held.grant.lease_seconds) == (2, 90)


# -- used from flows and tasks ------------------------------------------------------------
def test_sync_concurrency_can_be_used_within_a_flow(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow``
    in tests/concurrency/test_concurrency_sync.py."""
    client.create_limit("test", 1)
    seen: list[float] = []

    @task
    def resource_heavy() -> None:
        with sync.concurrency("test", occupy=1):
            seen.append(client.read_limit("test").active_slots)

    @flow
    def my_flow() -> None:
        resource_heavy()

    my_flow()
    assert seen == [1]
    assert client.read_limit("test").active_slots == 0


def test_async_concurrency_can_be_used_within_a_flow(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow``
    in tests/concurrency/test_concurrency_asyncio.py."""
    client.create_limit("test", 1)
    executed: list[bool] = []

    @task
    async def resource_heavy() -> None:
        async with aio.concurrency("test", occupy=1):
            executed.append(True)

    @flow
    async def my_flow() -> None:
        await resource_heavy()

    asyncio.run(my_flow())
    assert executed == [True]
    assert client.read_limit("test").active_slots == 0


def test_sync_concurrency_can_be_used_while_an_event_loop_is_running(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_while_event_loop_is_running``
    in tests/concurrency/test_concurrency_sync.py."""
    client.create_limit("test", 1)

    def resource_heavy() -> bool:
        with sync.concurrency("test", occupy=1):
            return True

    async def main() -> bool:
        return resource_heavy()

    assert asyncio.run(main())


def test_rate_limit_can_be_used_within_a_flow(client: Client) -> None:
    """Prefect: ``test_rate_limit_can_be_used_within_a_flow``
    in tests/concurrency/test_concurrency_sync.py."""
    client.create_limit("test", 1, slot_decay_per_second=0.1)
    executed: list[bool] = []

    @task
    def resource_heavy() -> None:
        sync.rate_limit("test", occupy=1)
        executed.append(True)

    @flow
    def my_flow() -> None:
        resource_heavy()

    my_flow()
    assert executed == [True]
    assert client.read_limit("test").active_slots == 1  # a token is not given back


def test_async_rate_limit_can_be_used_within_a_flow(client: Client) -> None:
    """Prefect: ``test_rate_limit_can_be_used_within_a_flow``
    in tests/concurrency/test_concurrency_asyncio.py."""
    client.create_limit("test", 1, slot_decay_per_second=0.1)
    executed: list[bool] = []

    @task
    async def resource_heavy() -> None:
        await aio.rate_limit("test", occupy=1)
        executed.append(True)

    @flow
    async def my_flow() -> None:
        await resource_heavy()

    asyncio.run(my_flow())
    assert executed == [True]
