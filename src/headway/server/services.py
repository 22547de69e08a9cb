"""Background services of a server process, started and stopped with the app.

- **Lease sweeper**: reaps expired leases and waiters (and those of dead
  processes on this machine) every few seconds and wakes whoever they blocked,
  so a dead holder's slots come back within a lease and a sweep, even when
  nobody else asks for that limit. Every server sweeps; sweeps are idempotent.
- **Event pruner**: deletes events older than ``HEADWAY_EVENTS_RETENTION_SECONDS``,
  a bounded batch every minute (more often while a backlog remains).
- **Scheduler**: creates deployments' scheduled runs ahead of time (idempotent:
  any number of servers and workers may) and marks runs not started long after
  their time Late, every few seconds. (The sweeper also ends runs whose worker
  stopped renewing their lease: CRASHED, their slots back.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio

from headway.orchestrator import Orchestrator
from headway.settings import Settings

T = TypeVar("T")
logger = logging.getLogger("headway.server")
#: How often the server prunes old events, and how many at most each time.
PRUNE_EVERY_SECONDS = 60.0
PRUNE_BATCH = 10_000
#: How often the server schedules deployments' runs, marks late ones, ends dead ones.
SCHEDULE_EVERY_SECONDS = 5.0


def sweep_interval(settings: Settings) -> float:
    """Seconds between sweeps: a quarter lease, between 0.2 and 5 s."""
    return max(0.2, min(5.0, settings.concurrency_lease_seconds / 4))


class BackgroundServices:
    """The periodic work a server does while it runs.

    Each pass runs on a worker thread. Cancelling the task that awaits it does
    not stop that thread, so :meth:`stop` also waits until no pass is running:
    only then may the store be closed (closing SQLite under a running statement
    crashes the process).
    """

    def __init__(self, orchestrator: Orchestrator, settings: Settings) -> None:
        self.orchestrator = orchestrator
        self.settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self.sweeps = 0
        self._passes = threading.Condition()
        self._running = 0
        self._stopped = False

    async def start(self) -> None:
        """Start every service."""
        self._tasks.append(asyncio.create_task(self._sweeper(), name="headway-sweeper"))
        self._tasks.append(asyncio.create_task(self._pruner(), name="headway-event-pruner"))
        self._tasks.append(asyncio.create_task(self._scheduler(), name="headway-scheduler"))

    async def _in_thread(self, operation: Callable[[], T]) -> T:
        """Run one pass on a worker thread, counted so that :meth:`stop` can wait for it."""
        return await anyio.to_thread.run_sync(self._counted, operation)

    def _counted(self, operation: Callable[[], T]) -> T:
        with self._passes:
            if self._stopped:
                # Started after stop() looked: the store may be closing already.
                raise asyncio.CancelledError()
            self._running += 1
        try:
            return operation()
        finally:
            with self._passes:
                self._running -= 1
                self._passes.notify_all()

    def _wait_idle(self, timeout: float) -> bool:
        with self._passes:
            self._stopped = True
            return self._passes.wait_for(lambda: self._running == 0, timeout)

    async def _scheduler(self) -> None:
        orchestrator = self.orchestrator

        def one_pass() -> None:
            orchestrator.schedule_runs()
            orchestrator.mark_late_runs()

        while True:
            try:
                await self._in_thread(one_pass)
            except Exception as exc:  # the store may be down for a moment: try again later
                logger.warning("scheduler pass failed: %s", exc, extra={"action": "schedule"})
            await asyncio.sleep(SCHEDULE_EVERY_SECONDS)

    async def _pruner(self) -> None:
        pause = PRUNE_EVERY_SECONDS
        while True:
            await asyncio.sleep(pause)
            try:
                pruned = await self._in_thread(self.orchestrator.prune_events)
            except Exception as exc:  # the store may be down for a moment: try again later
                logger.warning("event pruning failed: %s", exc, extra={"action": "prune"})
                pause = PRUNE_EVERY_SECONDS
                continue
            # A full batch means more are due: keep going, gently.
            pause = 1.0 if pruned >= PRUNE_BATCH else PRUNE_EVERY_SECONDS

    async def _sweeper(self) -> None:
        interval = sweep_interval(self.settings)
        while True:
            await asyncio.sleep(interval)
            await self.sweep_once()

    async def sweep_once(self) -> None:
        """One sweep: expired leases reaped, then runs whose worker died ended.

        The two fail independently: leases are still reaped when ending runs
        fails, and the other way round. (Each also skips a damaged record on
        its own, in the store, and goes on with the others.)
        """
        try:
            reaped = await self._in_thread(self.orchestrator.sweep_slots)
        except Exception as exc:  # the store may be down for a moment: try again later
            logger.warning("lease sweep failed: %s", exc, extra={"action": "sweep"})
        else:
            self.sweeps += 1
            if reaped:
                logger.info(
                    "reaped %d expired lease(s)",
                    reaped,
                    extra={"action": "sweep", "reaped": reaped},
                )
        try:
            # Runs whose worker died: CRASHED, their slots back (within a lease and a sweep).
            await self._in_thread(self.orchestrator.sweep_runs)
        except Exception as exc:
            logger.warning("run sweep failed: %s", exc, extra={"action": "sweep_runs"})

    async def stop(self, timeout: float = 30.0) -> bool:
        """Stop every service and wait for its pass to end: True when none still runs.

        False after ``timeout`` with a pass still running (a store that does not
        answer): the caller must then leave the store open rather than close it
        under that pass.
        """
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        idle: bool = await anyio.to_thread.run_sync(self._wait_idle, timeout)
        if not idle:
            logger.error(
                "a background pass still runs after %.0f s: the store is left open",
                timeout,
                extra={"action": "stop"},
            )
        return idle
