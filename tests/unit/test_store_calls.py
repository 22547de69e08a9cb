"""The server's slot threads: releases and renewals go ahead of queued acquire attempts."""

from __future__ import annotations

import asyncio
import threading

from headway.server.store_calls import StoreCalls


def test_urgent_calls_go_ahead_of_queued_ones() -> None:
    calls = StoreCalls(1)
    gate = threading.Event()
    order: list[str] = []

    def blocked() -> str:
        gate.wait(10)
        return "blocked"

    def record(name: str) -> str:
        order.append(name)
        return name

    async def main() -> list[str]:
        first = calls(blocked)  # occupies the only thread
        queued = [calls(lambda i=i: record(f"attempt{i}")) for i in range(3)]
        urgent = calls(lambda: record("renew"), urgent=True)
        gate.set()
        return list(await asyncio.gather(first, *queued, urgent))

    try:
        results = asyncio.run(main())
    finally:
        calls.close()
    assert results == ["blocked", "attempt0", "attempt1", "attempt2", "renew"]
    assert order == ["renew", "attempt0", "attempt1", "attempt2"]


def test_close_finishes_queued_calls_first() -> None:
    calls = StoreCalls(2)
    done: list[int] = []

    async def main() -> None:
        await asyncio.gather(*(calls(lambda i=i: done.append(i)) for i in range(20)))

    asyncio.run(main())
    calls.close()
    assert sorted(done) == list(range(20))
    assert all(not t.is_alive() for t in calls._threads)
