"""The one-process runner behind ``serve()``: a scheduler and a worker loop together.

It runs a :class:`~headway.worker.Worker` for the served deployments (no work
pool: it claims exactly their runs), whose monitor also creates their
scheduled runs ahead of time (idempotently: any number of runners or
workers may do so). Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from headway.client.base import Client, get_client
from headway.worker.worker import Worker


class Runner:
    """Serve ``deployments`` (``<flow>/<name>``) from this process."""

    def __init__(
        self,
        deployments: Sequence[str],
        *,
        client: Client | None = None,
        limit: int | None = None,
        echo: TextIO | None = None,
        cancel_grace_seconds: float = 10.0,
        working_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client = client or get_client()
        self.deployments = list(deployments)
        self.worker = Worker(
            deployments=self.deployments,
            limit=limit,
            client=self.client,
            name=f"serve-{os.getpid()}-{'+'.join(self.deployments)}"[:200],
            echo=echo if echo is not None else sys.stdout,
            cancel_grace_seconds=cancel_grace_seconds,
            working_dir=working_dir,
        )

    def run(self) -> None:
        """Block until Ctrl-C or SIGTERM; then stop cleanly (no run left RUNNING)."""
        self.worker._say("serving " + ", ".join(self.deployments) + "; press Ctrl-C to stop")
        self.worker.run()

    def start(self) -> Runner:
        """Run in background threads (tests, embedding); stop with :meth:`stop`."""
        self.worker.start()
        return self

    def stop(self) -> None:
        """Stop claiming, cancel runs still going, unregister."""
        self.worker.stop()


__all__ = ["Runner"]
