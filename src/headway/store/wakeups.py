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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from headway.core.limits import WakeTarget
from headway.store.db import Database
from headway.store.wakeups_local import LocalWakeups
from headway.store.wakeups_pg import PostgresWakeups


class Listener(Protocol):
    """One waiter's end: block until notified or ``timeout`` seconds pass."""

    def wait(self, timeout: float) -> bool:
        """True when notified (and the notification is consumed), False on timeout."""

    def close(self) -> None:
        """Stop listening."""


class Notifier(Protocol):
    """Wakes waiters, in this process or others, after a commit freed slots for them."""

    def notify(self, targets: Sequence[WakeTarget]) -> None:
        """Tell each target to re-try now (best effort, never raises)."""


class Wakeups(Notifier, Protocol):
    """A notifier that also lets this process's waiters listen."""

    @property
    def address(self) -> str | None:
        """Where this process listens (stored on its waiter rows); None: in-process only."""

    def listen(self, waiter_id: str) -> Listener:
        """Start listening for ``waiter_id`` (before or after its row is written)."""

    def wake(self, waiter_id: str) -> None:
        """Wake this process's waiter ``waiter_id`` now, or as soon as it listens."""

    def listen_callback(self, waiter_id: str, callback: Callable[[], None]) -> Listener:
        """Like ``listen``, but each wake-up calls ``callback`` instead of waking a thread."""

    def close(self) -> None:
        """Stop the receiver and remove the socket."""


def open_wakeups(db: Database, directory: Path | None) -> Wakeups:
    """This process's wake-up source for the store ``db`` reaches.

    ``directory`` (``$HEADWAY_HOME/wake``) holds the datagram sockets of the
    embedded store's processes.
    """
    if db.dialect.notify_sql is not None:
        # Waiters in any process, server or machine are woken through the
        # database itself: LISTEN/NOTIFY.
        return PostgresWakeups(db.url)
    return LocalWakeups(directory)


__all__ = ["Listener", "LocalWakeups", "Notifier", "PostgresWakeups", "Wakeups", "open_wakeups"]
