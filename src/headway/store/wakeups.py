"""Who to wake when slots free, and how: the notification half of the slot engine.

A waiting request registers a :class:`Listener` under its waiter id; whoever
frees slots computes (in its transaction) which waiters could now be granted,
and after the commit calls :meth:`Wakeups.notify` with them. A notification is
only a hint to re-try at once: the grant itself is always decided by the
store, and every waiter also re-checks at a short capped interval, so a lost
notification costs latency, never correctness.

:func:`open_wakeups` is the one place that chooses the transport for a store:
LISTEN/NOTIFY where the database delivers notifications at commit
(PostgreSQL, ``store/wakeups_pg.py``), else events in process and Unix
datagrams across the processes of one machine (``store/wakeups_local.py``).
Callers ask the store (``Store.open_wakeups``), never the dialect.
"""

from __future__ import annotations

from pathlib import Path

from headway.core.wakeups import Listener, Notifier, Wakeups
from headway.store.db import Database
from headway.store.wakeups_local import LocalWakeups
from headway.store.wakeups_pg import PostgresWakeups


def open_wakeups(db: Database, directory: Path | None) -> Wakeups:
    """This process's wake-up source for the store ``db`` reaches.

    ``directory`` (``$HEADWAY_HOME/wake``) holds the datagram sockets of the
    embedded store's processes.
    """
    if db.dialect.notify_sql is not None:
        # Waiters in any process, server or machine are woken through the
        # database itself: LISTEN/NOTIFY.
        return PostgresWakeups(db)
    return LocalWakeups(directory)


__all__ = ["Listener", "LocalWakeups", "Notifier", "PostgresWakeups", "Wakeups", "open_wakeups"]
