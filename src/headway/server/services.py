"""Background services of a server process, started and stopped with the app."""

from __future__ import annotations

import asyncio
import logging

from headway.orchestrator import Orchestrator
from headway.settings import Settings

logger = logging.getLogger("headway.server")


class BackgroundServices:
    """The periodic work a server does while it runs."""

    def __init__(self, orchestrator: Orchestrator, settings: Settings) -> None:
        self.orchestrator = orchestrator
        self.settings = settings
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every service."""

    async def stop(self) -> None:
        """Stop every service and wait for it."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
