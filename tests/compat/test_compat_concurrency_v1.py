"""Prefect's tag-based v1 API, ``headway.concurrency.v1``, on headway's tag limits.

A v1 name is a tag: tag ``test`` is limited by headway's ``tag:test`` (what
``headway concurrency-limit create test 1`` makes), and the slot is held by a
lease whose holder is the given task run.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from headway import flow, task
from headway.client.base import Client, get_client, set_default_client
from headway.concurrency.v1 import asyncio as v1_aio
from headway.concurrency.v1 import sync as v1_sync

TASK_RUN_ID = uuid.UUID("00000000-0000-0000-0000-000000000000")
NAME_CASES = pytest.mark.parametrize("names", [[], None], ids=["empty-list", "none"])


@pytest.fixture
def client() -> Client:
    client = get_client()
    client.create_limit("tag:test", 1)
    return client


def holders(client: Client, tag: str) -> list[tuple[str, str | None]]:
    return [(h.holder.kind, h.holder.id) for h in client.inspect_limit(f"tag:{tag}").holders]


def test_sync_holds_the_tag_slot_for_the_task_run(client: Client) -> None:
    """Prefect: ``test_concurrency_orchestrates_api``
    in tests/concurrency/v1/test_concurrency_sync.py.

    The tag's slot is taken for that task run while the block runs, and given back."""
    ran = False
    with v1_sync.concurrency("test", TASK_RUN_ID):
        ran = True
        assert holders(client, "test") == [("task_run", str(TASK_RUN_ID))]
    assert ran
    assert client.read_limit("tag:test").active_slots == 0


def test_async_holds_the_tag_slot_for_the_task_run(client: Client) -> None:
    """Prefect: ``test_concurrency_orchestrates_api``
    in tests/concurrency/v1/test_concurrency_asyncio.py."""

    async def main() -> None:
        async with v1_aio.concurrency("test", TASK_RUN_ID):
            assert await asyncio.to_thread(holders, client, "test") == [
                ("task_run", str(TASK_RUN_ID))
            ]

    asyncio.run(main())
    assert client.read_limit("tag:test").active_slots == 0


def test_sync_can_be_used_within_a_flow(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow``
    in tests/concurrency/v1/test_concurrency_sync.py."""
    executed: list[bool] = []

    @task
    def resource_heavy() -> None:
        with v1_sync.concurrency("test", TASK_RUN_ID):
            executed.append(True)

    @flow
    def my_flow() -> None:
        resource_heavy()

    my_flow()
    assert executed == [True]


def test_async_can_be_used_within_a_flow(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_within_a_flow``
    in tests/concurrency/v1/test_concurrency_asyncio.py."""
    executed: list[bool] = []

    @task
    async def resource_heavy() -> None:
        async with v1_aio.concurrency("test", TASK_RUN_ID):
            executed.append(True)

    @flow
    async def my_flow() -> None:
        await resource_heavy()

    asyncio.run(my_flow())
    assert executed == [True]


def test_sync_can_be_used_while_an_event_loop_is_running(client: Client) -> None:
    """Prefect: ``test_concurrency_can_be_used_while_event_loop_is_running``
    in tests/concurrency/v1/test_concurrency_sync.py."""

    def resource_heavy() -> bool:
        with v1_sync.concurrency("test", TASK_RUN_ID):
            return True

    async def main() -> bool:
        return resource_heavy()

    assert asyncio.run(main())


def test_sync_respects_timeout(client: Client) -> None:
    """Prefect: ``test_concurrency_respects_timeout``
    in tests/concurrency/v1/test_concurrency_sync.py."""
    with v1_sync.concurrency("test", uuid.uuid4()):
        with pytest.raises(TimeoutError, match=r"0\.01"):
            with v1_sync.concurrency("test", task_run_id=TASK_RUN_ID, timeout_seconds=0.01):
                raise AssertionError("should not be executed")
    assert client.inspect_limit("tag:test").waiters == ()


def test_async_respects_timeout(client: Client) -> None:
    """Prefect: ``test_concurrency_respects_timeout``
    in tests/concurrency/v1/test_concurrency_asyncio.py."""

    async def main() -> None:
        async with v1_aio.concurrency("test", uuid.uuid4()):
            with pytest.raises(TimeoutError, match=r"0\.01"):
                async with v1_aio.concurrency("test", TASK_RUN_ID, timeout_seconds=0.01):
                    raise AssertionError("should not be executed")

    asyncio.run(main())
    assert client.read_limit("tag:test").active_slots == 0


def test_timeout_error_is_importable_as_in_prefect(client: Client) -> None:
    """Prefect: ``test_concurrency_raises_when_locked_with_no_retry_after``
    in tests/concurrency/v1/test_concurrency_asyncio.py.

    Prefect's v1 modules export ConcurrencySlotAcquisitionError (and the timeout
    error, a TimeoutError); headway's are the same classes as everywhere else."""
    assert issubclass(v1_aio.AcquireConcurrencySlotTimeoutError, TimeoutError)
    assert issubclass(
        v1_aio.AcquireConcurrencySlotTimeoutError, v1_aio.ConcurrencySlotAcquisitionError
    )
    assert v1_sync.ConcurrencySlotAcquisitionError is v1_aio.ConcurrencySlotAcquisitionError


@pytest.mark.fresh_store  # checks that no store is created
@NAME_CASES
def test_sync_without_names_runs_unlimited(names: list[str] | None, headway_home: Path) -> None:
    """Prefect: ``test_concurrency_without_limit_names_sync``
    in tests/concurrency/v1/test_concurrency_sync.py.

    Nothing is acquired or released: the store is not even opened."""
    ran = False
    with v1_sync.concurrency(names=names, task_run_id=TASK_RUN_ID):
        ran = True
    assert ran
    assert set_default_client(None) is None and not (headway_home / "headway.db").exists()


@pytest.mark.fresh_store  # checks that no store is created
@NAME_CASES
def test_async_without_names_runs_unlimited(names: list[str] | None, headway_home: Path) -> None:
    """Prefect: ``test_concurrency_without_limit_names``
    in tests/concurrency/v1/test_concurrency_asyncio.py."""
    ran: list[bool] = []

    async def main() -> None:
        async with v1_aio.concurrency(names, TASK_RUN_ID):
            ran.append(True)

    asyncio.run(main())
    assert ran == [True]
    assert set_default_client(None) is None and not (headway_home / "headway.db").exists()


def test_a_tag_without_a_limit_takes_nothing(client: Client) -> None:
    """Prefect: ``test_concurrency_emits_events``
    in tests/concurrency/v1/test_concurrency_sync.py.

    Prefect acquires (and reports) only the tags that have a limit: here
    ``test`` is limited and ``other`` is not, so only ``tag:test`` is held."""
    with v1_sync.concurrency(["test", "other"], TASK_RUN_ID) as held:
        assert held.names == ("tag:test",)
        assert client.read_limit("tag:test").active_slots == 1
    assert client.read_limit("tag:test").active_slots == 0
