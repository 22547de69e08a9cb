"""Stopping the background services waits for a pass that is still running.

A pass runs on a worker thread; cancelling the task that awaits it leaves the
thread running. The store is closed right after the services stop, and closing
SQLite under a running statement crashed the server (exit 139) at shutdown.
"""

from __future__ import annotations

import asyncio
import threading

import anyio

from headway.server.services import BackgroundServices
from headway.settings import Settings


class _BlockingSweep:
    """A lease sweep that runs until the test lets it finish."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def sweep_slots(self) -> int:
        self.entered.set()
        self.release.wait(30)
        self.finished.set()
        return 0

    def sweep_runs(self) -> int:
        return 0


def test_stop_waits_for_the_pass_in_its_thread() -> None:
    fake = _BlockingSweep()
    services = BackgroundServices(fake, Settings())  # type: ignore[arg-type]

    async def scenario() -> tuple[bool, bool, bool]:
        services._tasks.append(asyncio.create_task(services.sweep_once()))
        assert await anyio.to_thread.run_sync(fake.entered.wait, 30)
        stopping = asyncio.create_task(services.stop(timeout=30))
        # Still stopping while the pass runs (a stop that returned now would let
        # the store close under it).
        done, _ = await asyncio.wait({stopping}, timeout=1.0)
        early = bool(done)
        fake.release.set()
        idle = await stopping
        return early, idle, fake.finished.is_set()

    early, idle, finished = asyncio.run(scenario())
    assert not early
    assert idle and finished


def test_stop_reports_a_pass_that_does_not_end() -> None:
    fake = _BlockingSweep()
    services = BackgroundServices(fake, Settings())  # type: ignore[arg-type]

    async def scenario() -> bool:
        services._tasks.append(asyncio.create_task(services.sweep_once()))
        assert await anyio.to_thread.run_sync(fake.entered.wait, 30)
        return await services.stop(timeout=0.05)

    try:
        assert asyncio.run(scenario()) is False  # the caller then leaves the store open
    finally:
        fake.release.set()
