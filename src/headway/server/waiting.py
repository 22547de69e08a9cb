"""Held requests: waiting for slots through the server without a thread per waiter.

A request that must wait is an asyncio task parked on an ``asyncio.Event``.
The server process has one wake-up source (the store's
:class:`~headway.store.wakeups.LocalWakeups` on SQLite, ``LISTEN/NOTIFY`` on
PostgreSQL), whose single receiver thread sets that event through the loop
the moment a release makes room for this waiter. Each attempt to take the
slots is one short store transaction on the slot threads; between attempts the
request costs a socket and a few objects, so thousands may wait at once.

A wait lasts at most the long-poll cap; the client then asks again with the
same waiter id and keeps its place in the queue. While held, the waiter row is
refreshed (by re-attempting) well within its TTL, and a client that hangs up
leaves the queue at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from headway.core.limits import SlotGrant, SlotWait
from headway.server.store_calls import RunsStoreCalls
from headway.store.wakeups import Listener, LocalWakeups

#: The longest a request is held before the server answers "still waiting".
LONG_POLL_CAP_SECONDS = 30.0

Attempt = Callable[[], SlotGrant | SlotWait]

logger = logging.getLogger("headway.server")


class _CallbackEvent(threading.Event):
    """A threading.Event that also runs a callback when set (from any thread)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def set(self) -> None:
        super().set()
        self._callback()


class CallbackListening:
    """Adds :meth:`listen_callback` to a :class:`LocalWakeups` (or subclass)."""

    def listen_callback(self, waiter_id: str, callback: Callable[[], None]) -> Listener:
        """Like ``listen``, but each wake-up calls ``callback`` instead of waking a thread."""
        hub: Any = self
        listener: Any = LocalWakeups.listen(hub, waiter_id)
        # Swap the plain event for one that calls back; keep a wake-up that came early.
        event = _CallbackEvent(callback)
        with hub._lock:
            if hub._events.get(waiter_id) is listener._event:
                if listener._event.is_set():
                    event.set()
                hub._events[waiter_id] = event
                listener._event = event
        result: Listener = listener
        return result


class ServerLocalWakeups(CallbackListening, LocalWakeups):
    """The SQLite server's wake-up source: LocalWakeups with callback listeners."""


def server_wakeups(settings: Any, db: Any) -> Any:
    """The wake-up source of a server process for its store's database."""
    if db.dialect.name == "postgresql":
        # The postgres extra's psycopg: only a server on PostgreSQL loads it.
        from headway.store.wakeups_pg import PostgresWakeups

        class ServerPostgresWakeups(CallbackListening, PostgresWakeups):
            """PostgreSQL LISTEN/NOTIFY with callback listeners."""

        return ServerPostgresWakeups(db)
    return ServerLocalWakeups(settings.home / "wake")


class HeldRequests:
    """The waiting requests of one server process, parked on asyncio events."""

    def __init__(
        self,
        wakeups: Any,
        refresh_seconds: float,
        run: RunsStoreCalls,
        refresh: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.wakeups = wakeups
        #: Refreshes the waiter rows of every request held here, in one store call.
        self.refresh = refresh
        self._refresher: asyncio.Task[None] | None = None
        #: Runs one blocking store call off the loop (the slot threads).
        self.run = run
        #: Re-attempt at least this often: refreshes the waiter row within its TTL
        #: and covers a lost notification.
        self.refresh_seconds = refresh_seconds
        self._cancelled: dict[str, float] = {}
        self._events: dict[str, asyncio.Event] = {}
        # Per set of limit names: the lock its held requests re-attempt under, and
        # how many requests use it (asyncio.Lock serves waiters first come, first served).
        self._turns: dict[Hashable, list[Any]] = {}
        self.waiting = 0

    def _turn_lock(self, turn: Hashable) -> asyncio.Lock:
        entry = self._turns.get(turn)
        if entry is None:
            entry = self._turns[turn] = [asyncio.Lock(), 0]
        entry[1] += 1
        lock: asyncio.Lock = entry[0]
        return lock

    def _release_turn(self, turn: Hashable) -> None:
        entry = self._turns[turn]
        entry[1] -= 1
        if entry[1] == 0:
            del self._turns[turn]

    async def _keep_places(self) -> None:
        # The rows of held requests are refreshed together, on the urgent lane:
        # a re-attempt per request queues behind the others under load, and a row
        # not refreshed within its TTL would expire and its request lose its place.
        assert self.refresh is not None
        refresh = self.refresh
        while True:
            await asyncio.sleep(self.refresh_seconds)
            held = list(self._events)
            if held:
                try:
                    await self.run(functools.partial(refresh, held), urgent=True)
                except Exception as exc:  # the store is briefly away: the next round
                    logger.warning("could not refresh %d held request(s): %s", len(held), exc)

    def close(self) -> None:
        """Stop refreshing the held requests' rows (the server is stopping)."""
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    def cancelled(self, waiter_id: str) -> None:
        """A cancel came for ``waiter_id``: a request held for it stops at once."""
        now = time.monotonic()
        self._cancelled[waiter_id] = now
        if len(self._cancelled) > 10_000:
            for key, at in list(self._cancelled.items()):
                if now - at > 2 * LONG_POLL_CAP_SECONDS:
                    del self._cancelled[key]
        event = self._events.get(waiter_id)
        if event is not None:
            event.set()

    async def hold(
        self,
        attempt: Attempt,
        waiter_id: str,
        seconds: float,
        disconnected: Callable[[], Awaitable[Any]],
        cancel: Callable[[], None],
        turn: Hashable = None,
    ) -> SlotGrant | SlotWait:
        """Attempt now, then on every wake-up, until granted or ``seconds`` pass.

        ``attempt`` is one store attempt for ``waiter_id`` (run on the slot
        threads); ``disconnected`` completes when the client hangs up, and then
        ``cancel`` takes the request out of the queue. Re-attempts of requests
        with the same ``turn`` (the limits they want) run one at a time, in the
        order their wake-ups came, which is the queue's order.
        """
        self._cancelled.pop(waiter_id, None)
        loop = asyncio.get_running_loop()
        if self.refresh is not None and self._refresher is None:
            self._refresher = loop.create_task(self._keep_places())
        event = asyncio.Event()
        listener = self.wakeups.listen_callback(
            waiter_id, lambda: loop.call_soon_threadsafe(event.set)
        )
        self._events[waiter_id] = event
        deadline = loop.time() + seconds
        hangup: asyncio.Future[Any] | None = None
        self.waiting += 1
        lock = self._turn_lock(turn)
        first = True
        try:
            while True:
                event.clear()
                if first:
                    result = await self.run(attempt)
                    first = False
                else:
                    # A release wakes every waiter that fits, in queue order; a
                    # waiter is granted only when none ahead of it still waits.
                    # Racing each other, most attempts would find one ahead and
                    # wait again (quadratic work on a burst); in turn, each finds
                    # the one before it already served.
                    async with lock:
                        result = await self.run(attempt)
                if isinstance(result, SlotGrant):
                    return result
                if waiter_id in self._cancelled:
                    # The cancel may have run before this attempt queued the
                    # request: take it out again.
                    await self.run(cancel)
                    return result
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return result
                pause = min(remaining, self.refresh_seconds)
                if result.retry_after is not None:
                    pause = min(pause, max(result.retry_after, 0.001))
                if hangup is None:
                    hangup = asyncio.ensure_future(disconnected())
                woken = asyncio.ensure_future(event.wait())
                done, _ = await asyncio.wait(
                    {woken, hangup}, timeout=pause, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                if hangup in done:
                    await self.run(cancel)
                    return result
                if waiter_id in self._cancelled:
                    await self.run(cancel)
                    return result
        finally:
            self.waiting -= 1
            self._release_turn(turn)
            if self._events.get(waiter_id) is event:
                del self._events[waiter_id]
            listener.close()
            if hangup is not None:
                hangup.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await hangup
