"""``headway.concurrency.asyncio``: the same guarantees for coroutines, and cancellation.

A task cancelled while it waits leaves the queue and never ends up holding a
slot; a task cancelled while it holds gives its slots back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from headway.client.base import Client
from headway.concurrency.asyncio import concurrency, rate_limit
from headway.concurrency.sync import concurrency as sync_concurrency
from headway.exceptions import AcquireConcurrencySlotTimeoutError, ValidationError
from helpers.waiting import wait_until


async def until(predicate: Callable[[], bool], what: str = "the condition") -> None:
    """Wait (off the loop, which goes on) until a condition of the store holds."""
    await asyncio.to_thread(wait_until, predicate, what)


def test_async_block_holds_and_releases(client: Client) -> None:
    client.create_limit("db", 2)

    async def main() -> None:
        async with concurrency("db", occupy=2) as held:
            assert held.names == ("db",)
            assert client.read_limit("db").active_slots == 2
        assert client.read_limit("db").active_slots == 0

    asyncio.run(main())


def test_coroutines_never_exceed_the_limit(client: Client) -> None:
    client.create_limit("db", 2)
    inside = 0
    most = 0

    async def main() -> None:
        gate = asyncio.Event()

        async def work() -> None:
            nonlocal inside, most
            async with concurrency("db"):
                inside += 1
                most = max(most, inside)
                await gate.wait()  # hold until the limit is known to be full
                await asyncio.sleep(0.001)
                inside -= 1

        tasks = [asyncio.create_task(work()) for _ in range(12)]
        # Two inside, ten queued in the store: the limit binds...
        await until(lambda: len(client.inspect_limit("db").waiters) == 10)
        assert inside == 2
        gate.set()
        # ...and never gives way while the rest go through.
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert most == 2
    assert client.read_limit("db").active_slots == 0


def test_cancelled_while_waiting_leaves_the_queue_and_holds_nothing(client: Client) -> None:
    client.create_limit("db", 1)

    async def main() -> None:
        with sync_concurrency("db"):
            entered = asyncio.Event()

            async def waiter() -> None:
                async with concurrency("db"):
                    entered.set()
                    await asyncio.Event().wait()  # until cancelled

            task = asyncio.create_task(waiter())
            await until(lambda: len(client.inspect_limit("db").waiters) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: len(client.inspect_limit("db").waiters) == 0)
            assert not entered.is_set()
        # The slot went back when the sync block ended, and nobody took it afterwards.
        await until(lambda: client.read_limit("db").active_slots == 0)
        async with concurrency("db", timeout_seconds=5):
            assert len(client.inspect_limit("db").holders) == 1

    asyncio.run(main())
    assert client.read_limit("db").active_slots == 0


def test_cancelled_while_holding_gives_the_slots_back(client: Client) -> None:
    client.create_limit("db", 1)

    async def main() -> None:
        entered = asyncio.Event()

        async def holder() -> None:
            async with concurrency("db"):
                entered.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(holder())
        await asyncio.wait_for(entered.wait(), 10)
        assert client.read_limit("db").active_slots == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.read_limit("db").active_slots == 0

    asyncio.run(main())


def test_async_timeout_and_validation(client: Client) -> None:
    client.create_limit("db", 1)

    async def main() -> None:
        with pytest.raises(ValidationError):
            async with concurrency("db", occupy=2):
                pass
        async with concurrency("db"):
            with pytest.raises(AcquireConcurrencySlotTimeoutError):
                async with concurrency("db", timeout_seconds=0.1):
                    pass
        assert len(client.inspect_limit("db").waiters) == 0

    asyncio.run(main())


def test_async_rate_limit(client: Client) -> None:
    client.create_limit("api", 2, slot_decay_per_second=1.0)

    async def main() -> None:
        await rate_limit("api")
        await rate_limit("api")
        with pytest.raises(AcquireConcurrencySlotTimeoutError):
            await rate_limit("api", timeout_seconds=0)
        await rate_limit("api", timeout_seconds=5)

    asyncio.run(main())
