"""Jittered exponential back-off: the one pause of every retry loop in headway.

A loop that retries something that failed (a server restarting, a PostgreSQL
connection lost, a deadlock victim, a claim that failed) pauses between tries,
longer each time up to a cap, so a dead peer is not hammered. Each pause is
jittered (drawn below its nominal length) so that the many clients a restart
failed all at once do not come back all at once, in lockstep.

:class:`Backoff` is the shape of the pauses (first, factor, cap, jitter); its
:meth:`~Backoff.start` gives a :class:`Retry`, one loop's progress: how many
pauses it took, and what bounds it (a deadline, a number of attempts). The
sleep is injected: ``Event.wait`` makes a pause interruptible (it returns True
when the event is set, and the retry then stops), and tests pass a fake one
with a seeded ``random.Random`` to check every delay exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

#: ``sleep(seconds)``: pause; a true result means "interrupted: stop retrying".
Sleep = Callable[[float], object]


@dataclass(frozen=True)
class Backoff:
    """Pauses of ``first`` seconds, times ``factor`` after each, at most ``cap``, jittered.

    A pause of nominal length ``d`` lasts ``d * (1 - jitter * u)`` with ``u``
    uniform in [0, 1): ``jitter=0`` is no jitter, ``jitter=1`` "full jitter".
    """

    #: Nominal length of the first pause, in seconds.
    first: float
    #: Longest nominal pause, in seconds.
    cap: float
    #: Each nominal pause is the previous one times this (1: constant pauses).
    factor: float = 2.0
    #: Fraction of each pause that is random (0 to 1).
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"need 0 < first <= cap, got first={self.first}, cap={self.cap}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def nominal(self, pause: int) -> float:
        """The un-jittered length of pause number ``pause`` (0 is the first)."""
        try:
            return min(self.cap, self.first * self.factor**pause)
        except OverflowError:
            return self.cap

    def delay(self, pause: int, rng: random.Random | None = None) -> float:
        """The jittered length of pause number ``pause``."""
        draw = random.random() if rng is None else rng.random()
        return self.nominal(pause) * (1.0 - self.jitter * draw)

    def start(
        self,
        *,
        within: float | None = None,
        attempts: int | None = None,
        sleep: Sleep = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> Retry:
        """A retry loop paced by these pauses.

        ``within``: no pause would end more than this many seconds from now (or
        from the last :meth:`Retry.reset`). ``attempts``: the operation is tried
        at most this many times (``attempts - 1`` pauses). Neither: unbounded.
        """
        return Retry(self, within=within, attempts=attempts, sleep=sleep, clock=clock, rng=rng)


class Retry:
    """One retry loop's progress through a :class:`Backoff`.

    Typical use::

        retry = Backoff(0.05, 1.0).start(within=15.0)
        while True:
            try:
                return operation()
            except Unreachable:
                if not retry.pause():
                    raise
    """

    def __init__(
        self,
        backoff: Backoff,
        *,
        within: float | None,
        attempts: int | None,
        sleep: Sleep,
        clock: Callable[[], float],
        rng: random.Random | None,
    ) -> None:
        if attempts is not None and attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.backoff = backoff
        self._within = within
        self._attempts = attempts
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        #: Pauses taken since the start (or the last reset).
        self.pauses = 0
        self._deadline = None if within is None else clock() + within

    def next_delay(self) -> float | None:
        """The length of the next pause, or None when the bounds allow no more.

        Each call draws anew: a loop that sleeps by itself (to cut the pause
        short, say) calls this and then :meth:`count`.
        """
        if self._attempts is not None and self.pauses + 1 >= self._attempts:
            return None
        delay = self.backoff.delay(self.pauses, self._rng)
        if self._deadline is not None and self._clock() + delay > self._deadline:
            return None
        return delay

    def count(self) -> None:
        """Record a pause the loop took by itself (the next one is longer)."""
        self.pauses += 1

    def pause(self) -> bool:
        """Pause before the next try: False, without pausing, when the bounds allow
        no more tries; False too when the sleep was interrupted."""
        delay = self.next_delay()
        if delay is None:
            return False
        self.pauses += 1
        return not self._sleep(delay)

    def reset(self) -> None:
        """Start over after a success: the next pause is the first, the bounds restart."""
        self.pauses = 0
        if self._within is not None:
            self._deadline = self._clock() + self._within


__all__ = ["Backoff", "Retry", "Sleep"]
