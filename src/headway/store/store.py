"""The Store: every operation headway performs on its database.

``Store`` is assembled from one mixin per idea (runs, slots, ...); each
operation is one short transaction. Nothing outside ``store/`` writes SQL.
"""

from __future__ import annotations

import os
import socket

from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.settings import Settings
from headway.store.db import Database
from headway.store.deployments import DeploymentStore
from headway.store.explain import ExplainStore
from headway.store.migrate import ensure_schema
from headway.store.runs import RunStore
from headway.store.slots import SlotStore


class Store(RunStore, SlotStore, DeploymentStore, ExplainStore):
    """A headway database: SQLite (embedded) or PostgreSQL."""

    def __init__(self, db: Database, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.settings = settings
        #: Every expiry the store decides is measured on this clock (see core.clock).
        self.clock = clock
        self.host = socket.gethostname()
        self.pid = os.getpid()

    @classmethod
    def open(
        cls, settings: Settings, *, migrate: bool = True, clock: Clock = SYSTEM_CLOCK
    ) -> Store:
        """Open the store the settings name, creating or migrating its schema if needed."""
        db = Database(
            settings.effective_database_url,
            settings.store_busy_timeout_seconds,
            settings.database_pool_size,
        )
        if migrate:
            ensure_schema(db)
        return cls(db, settings, clock)

    def close(self) -> None:
        """Write buffered events, then close every connection."""
        try:
            self.close_events()
        finally:
            self.db.close()
