"""The slot engine's parts: limits, slots (acquire, release, renew), handoff, reaping.

Each part is a class that gets its database, clock and the parts it needs in
its constructor (``store/store.py`` builds them); the statements they share
run inside the caller's transaction (``rows.py``, ``fast.py``). On PostgreSQL
the same operations run as functions in the database (``pg.py``, ``pg_acquire.py``).
"""

from __future__ import annotations

from headway.store.slots.engine import Slots
from headway.store.slots.handoff import Handoff
from headway.store.slots.limits import Limits
from headway.store.slots.reaper import Reaper
from headway.store.slots.run_waits import RunWaits

__all__ = ["Handoff", "Limits", "Reaper", "RunWaits", "Slots"]
