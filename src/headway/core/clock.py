"""The time leases, waiters, schedules and sweeps are measured against.

Every expiry headway decides (a lease past its time, a waiter not refreshed, a
run whose worker went silent, a schedule that came due) reads one clock, given
to the store when it is built. Production uses the system's wall clock. A test
of expiry moves a :class:`MovableClock` forward instead of sleeping, so it does
not depend on how fast a loaded machine runs, and a test that is not about
expiry never sees a lease run out under it.

Waiting (how long a request is held, when a worker polls again) is measured on
the monotonic clock where it happens; it is not the store's concern.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the Unix epoch, as the store compares expiries."""

    def now(self) -> float:
        """The current time in seconds since the epoch."""
        ...


class SystemClock:
    """The wall clock (``time.time``): what every store uses unless given another."""

    __slots__ = ()

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


#: The one system clock (it holds no state).
SYSTEM_CLOCK = SystemClock()


class MovableClock:
    """The wall clock plus an offset that only grows: :meth:`advance` jumps ahead.

    Time still passes as usual between jumps, so waits, timeouts and the order
    of events stay realistic; a jump makes every expiry within it due at once,
    as if that much time had gone by. Safe to share between threads (a test's
    client and its in-process server read the same clock).
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """The wall clock, moved on by every :meth:`advance` so far."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (never back: expiries only come due)."""
        if not seconds >= 0:
            raise ValueError(f"a clock moves forward only, not by {seconds!r}")
        with self._lock:
            self._offset += seconds

    def __repr__(self) -> str:
        return f"MovableClock(offset={self._offset!r})"
