"""The shape of wake-ups: how a waiting request listens, and how a release wakes it.

A waiting request registers a :class:`Listener` under its waiter id; whoever
frees slots computes (in its transaction) which waiters could now be granted,
and after the commit calls :meth:`Notifier.notify` with them. A notification
is only a hint to re-try at once: the grant itself is always decided by the
store. The transports (``store/wakeups_local.py``, ``store/wakeups_pg.py``)
implement :class:`Wakeups`; ``store/wakeups.py`` chooses one per store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from headway.core.limits import WakeTarget


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


__all__ = ["Listener", "Notifier", "Wakeups"]
