"""The Store: every operation headway performs on its database, one part per area.

``Store`` holds one small part per area, each a class of its own that gets
its connection source (``db``), clock and settings, and the other parts it
needs, through its constructor: nothing is shared through ``self``. Callers
name the part: ``store.slots.acquire_slots(...)``, ``store.runs.read_flow_run(...)``.

====================  ==============================================================
``store.events``      events, histograms and limit counters (``events.py``, ``histograms.py``)
``store.limits``      limits of every scope (``slots/limits.py``)
``store.slots``       acquire, release, renew; a waiter's look for its grant (``slots/``)
``store.reaper``      expired and dead leases and waiters (``slots/reaper.py``)
``store.runs``        flow runs, task runs, states, logs (``runs.py``)
``store.run_leases``  claimed runs' leases, endings, cancellation (``run_leases.py``)
``store.pools``       work pools, queues, workers (``pools.py``)
``store.deployments`` deployments, their schedules and limits (``deployments.py``)
``store.scheduling``  deployment runs on demand and from schedules (``scheduling.py``)
``store.claims``      claiming due runs (``claims.py``)
``store.explain``     read-only facts for explanations (``explain.py``)
====================  ==============================================================

Each operation is one short transaction; parts that work inside another's
transaction (a run ending gives its slots back) call each other's methods
that take a ``tx``. Nothing outside ``store/`` writes SQL.
"""

from __future__ import annotations

from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.settings import Settings
from headway.store.claims import Claims
from headway.store.db import Database
from headway.store.deployments import Deployments
from headway.store.events import Events
from headway.store.explain import Explain
from headway.store.histograms import Histograms
from headway.store.migrate import ensure_schema
from headway.store.pools import Pools
from headway.store.run_leases import RunLeases
from headway.store.runs import Runs
from headway.store.scheduling import Scheduling
from headway.store.slots import Handoff, Limits, Reaper, RunWaits, Slots
from headway.store.wakeups import Wakeups, open_wakeups


class Store:
    """A headway database (SQLite embedded, or PostgreSQL), as one part per area."""

    def __init__(self, db: Database, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.settings = settings
        #: Every expiry the store decides is measured on this clock (see core.clock).
        self.clock = clock
        self.events = Events(db, settings, clock, Histograms(db))
        handoff = Handoff(db, settings, clock, self.events)
        self.reaper = Reaper(db, clock, self.events, handoff)
        self.limits = Limits(db, clock, self.events, handoff, self.reaper)
        run_waits = RunWaits(db, clock, self.events, handoff)
        self.slots = Slots(db, settings, clock, self.events, handoff, self.reaper, run_waits)
        self.runs = Runs(db, clock, run_waits)
        self.run_leases = RunLeases(db, clock, self.events, self.runs, self.slots)
        self.pools = Pools(db, clock, self.limits, self.run_leases)
        self.deployments = Deployments(db, clock, self.limits, self.pools, self.run_leases)
        self.scheduling = Scheduling(db, clock, self.events, self.runs, self.run_leases)
        self.claims = Claims(
            db, clock, self.events, self.runs, self.run_leases, self.pools, self.limits, self.slots
        )
        self.explain = Explain(db, clock)

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

    def open_wakeups(self) -> Wakeups:
        """This process's wake-up source for this store (``store/wakeups.py`` chooses)."""
        return open_wakeups(self.db, self.settings.home / "wake")

    def close(self) -> None:
        """Write buffered events, then close every connection."""
        try:
            self.events.close_events()
        finally:
            self.db.close()


__all__ = ["Store"]
