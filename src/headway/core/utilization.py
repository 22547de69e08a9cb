"""Utilization while waiting: how much of a limit was held while anyone waited for it.

A limit exists because several callers want the same few slots; while at
least one of them waits, every slot not held is capacity lost. This is the
share of the limit's capacity held during the time somebody waited, from the
intervals the store recorded: each hold (granted .. released, its slots) and
each wait (queued .. granted or gone). 100 % means no slot ever sat free while
someone queued; a rate limit's slots are not held, so it has no such figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Utilization:
    """One limit's utilization while waiting over a window."""

    #: The share (0..1) of the limit's capacity held while someone waited;
    #: None when nobody waited in the window (nothing to measure).
    share: float | None
    #: Seconds of the window during which at least one request waited.
    waiting_seconds: float
    #: The window measured, in seconds.
    window_seconds: float


def utilization_while_waiting(
    holds: Iterable[tuple[float, float, int]],
    waits: Iterable[tuple[float, float]],
    limit: int,
    start: float,
    end: float,
) -> Utilization:
    """Integrate held slots over the moments someone waited, within ``[start, end]``.

    ``holds`` are ``(granted, released, slots)`` and ``waits`` ``(queued, left)``,
    in seconds on one clock; either may reach outside the window (it is cut to
    it). Slots held above ``limit`` (a limit lowered under its holders) count as
    the limit: the share never passes 1.
    """
    window = max(0.0, end - start)
    if limit <= 0 or window == 0.0:
        return Utilization(None, 0.0, window)
    # (time, kind, delta): at one instant, ends go before starts, so a slot handed
    # straight on is never counted twice nor a wait that ends as one begins.
    changes: list[tuple[float, int, int, int]] = []
    for granted, released, slots in holds:
        lo, hi = max(granted, start), min(released, end)
        if hi > lo and slots > 0:
            changes.append((lo, 1, slots, 0))
            changes.append((hi, 0, -slots, 0))
    for queued, left in waits:
        lo, hi = max(queued, start), min(left, end)
        if hi > lo:
            changes.append((lo, 1, 0, 1))
            changes.append((hi, 0, 0, -1))
    changes.sort(key=lambda c: (c[0], c[1]))
    held = waiting = 0
    busy = waited = 0.0
    last = start
    for at, _, d_held, d_waiting in changes:
        if waiting > 0 and at > last:
            waited += at - last
            busy += (at - last) * min(held, limit)
        last = at
        held += d_held
        waiting += d_waiting
    if waited == 0.0:
        return Utilization(None, 0.0, window)
    return Utilization(min(1.0, busy / (waited * limit)), waited, window)
