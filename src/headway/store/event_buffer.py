"""The buffer of frequent events, and the thread that writes it (see ``store/events.py``).

Grants, denials and releases happen thousands of times a second: a process
queues their facts here and a flusher thread writes them in one batch every
:data:`FLUSH_INTERVAL_SECONDS` (and when its store closes or the process
exits), which costs a few microseconds per event instead of an indexed insert
in every slot transaction.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from headway.core.events import bucket_of

if TYPE_CHECKING:
    from headway.store.events import Events

#: How often a process writes the slot events it buffered.
FLUSH_INTERVAL_SECONDS = 0.2
#: How often a process that writes events also prunes those past the retention.
PRUNE_EVERY_SECONDS = 60.0
#: Past this many buffered events (the store unreachable for long), the oldest are dropped.
_BUFFER_MAX = 200_000
#: An event row: time, kind, run id, limit, slots, seconds, detail.
EventRow = tuple[float, str, str | None, str | None, int | None, float | None, str | None]

logger = logging.getLogger("headway.store")


class EventBuffer:
    """Slot events of one store in one process, waiting for the flusher thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        #: Tagged tuples: ("rows", rows), the facts of a grant, denial or release, or
        #: a histogram observation ("observe", metric, labels, value).
        #: A deque: appending and popping are atomic, so producers take no lock; past
        #: its bound (the store unreachable for long) the oldest are dropped.
        self.items: deque[tuple[Any, ...]] = deque(maxlen=_BUFFER_MAX)
        #: Set when items arrive in an empty buffer (wakes the flusher).
        self.ready = threading.Event()
        #: Held from taking items to committing them: a reader that flushes waits for
        #: a flush in progress, so it never reads past events still being written.
        self.flushing = threading.Lock()
        self.closed = False
        #: Set when the store closes: the flusher stops at once, even mid-pause.
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def drain(self) -> list[tuple[Any, ...]]:
        """Take every item queued so far."""
        items = self.items
        return [items.popleft() for _ in range(len(items))]


#: A histogram's bucket and how much fell in it: (metric, label, le) -> (count, total).
Observations = dict[tuple[str, str, float], tuple[int, float]]


def observations(items: Sequence[tuple[Any, ...]]) -> Observations:
    """The histogram observations among buffered items, summed per bucket."""
    summed: Observations = {}
    for item in items:
        if item[0] != "observe":
            continue
        _, metric, labels, value = item
        le = bucket_of(value)
        for label in labels:
            count, total = summed.get((metric, label, le), (0, 0.0))
            summed[(metric, label, le)] = (count + 1, total + value)
    return summed


def expand(item: tuple[Any, ...]) -> list[EventRow]:
    """The event rows of a buffered item (none for a histogram observation)."""
    tag = item[0]
    if tag == "observe":
        return []
    if tag == "rows":
        return list(item[1])
    if tag == "slot":
        _, now, kind, names, slots, holder_kind, holder_id, pid, host, lease, seconds, extra = item
        detail = f"{holder_kind}:{holder_id or '-'} pid={pid} host={host}"
        if lease is not None:
            detail += f" lease={lease}"
        detail += extra
        return [(now, kind, holder_id, n, slots, seconds, detail) for n in names]
    _, now, lease, rows = item  # released: limit, slots, created, expires, kind, holder
    return [
        (now, "slot.released", r[5], r[0], int(r[1]), now - float(r[2]),
         f"{r[4]}:{r[5] or '-'} lease={lease}")
        for r in rows
    ]  # fmt: skip


def flush_loop(store_ref: weakref.ref[Events], buffer: EventBuffer) -> None:
    """The flusher thread: writes the buffer every interval, prunes now and then."""
    pruned_at = time.monotonic()
    idle = 0.0
    while True:
        # The timeout also catches items appended while a flush was emptying the
        # buffer (their producer saw it non-empty and did not signal).
        buffer.ready.wait(1.0)
        if buffer.closed:
            return
        if not buffer.items:
            idle += 1.0
            # A store dropped without being closed must not keep its thread forever.
            if idle >= 5.0 and store_ref() is None:
                return
            continue
        idle = 0.0
        if buffer.stopping.wait(FLUSH_INTERVAL_SECONDS):  # gather a batch
            return  # the closing store writes what is left itself
        buffer.ready.clear()
        store = store_ref()
        if store is None:
            return
        try:
            store.flush_events()
            if time.monotonic() - pruned_at > PRUNE_EVERY_SECONDS:
                # Embedded stores have no server to prune them: whoever writes events does.
                pruned_at = time.monotonic()
                store.prune_events(store.settings.events_retention_seconds)
        except Exception as exc:  # the store may be down for a moment: retry next time
            logger.warning("could not write %d event(s): %s", len(buffer.items), exc)
            time.sleep(FLUSH_INTERVAL_SECONDS)
        del store


def flush_at_exit(store_ref: weakref.ref[Events]) -> None:
    """Write what is left when the interpreter exits (an atexit hook)."""
    store = store_ref()
    if store is not None:
        try:
            store.close_events()
        except Exception:
            pass  # the interpreter is ending: nothing left to report to


__all__ = [
    "FLUSH_INTERVAL_SECONDS",
    "PRUNE_EVERY_SECONDS",
    "EventBuffer",
    "EventRow",
    "Observations",
    "expand",
    "flush_at_exit",
    "flush_loop",
    "observations",
]
