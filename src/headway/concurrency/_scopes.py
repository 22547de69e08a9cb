"""Slots that must not outlive the code that took them, nor be freed before it ends.

A sync run with ``timeout_seconds`` runs its body in a helper thread. At the
deadline the run ends and the body is interrupted as Python allows: an
exception raised in its thread at its next bytecode, so a ``with concurrency()``
block exits and releases. Two things can still go wrong, and this module
covers both:

- **Leftovers.** The interrupt may land where no ``with`` catches it (between a
  grant and the block that would hold it, or inside a release). Every slot taken
  inside a :class:`BodyScope` is noted, and whatever the body left held is
  released when the body has ended: never earlier, since only then is nothing
  using it.
- **Lingering bodies.** A body blocked in C code (``time.sleep``, a socket read)
  is interrupted only when the call returns; until then it still does the work
  its slots guard. Slots held *around* the body (the task run's tag slots) are
  therefore released only once every such body has ended
  (:func:`note_lingering_body`, :class:`Lingering`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from headway.concurrency._leases import HeldSlots

logger = logging.getLogger("headway.concurrency")

T = TypeVar("T")

# How often a wait for a lingering body looks at its cancel event.
_CANCEL_CHECK_SECONDS = 0.25

# Above this many noted slots, released ones are forgotten (a body that takes
# slots in a long loop must not grow the list without bound).
_PRUNE_AT = 64


class BodyScope:
    """The slots taken while one body runs; :meth:`release_leftovers` after it ends."""

    __slots__ = ("_held", "_lock", "_thread")

    def __init__(self) -> None:
        self._held: list[HeldSlots] = []
        self._lock = threading.Lock()
        self._thread: int | None = None

    def add(self, held: HeldSlots) -> None:
        """Note slots taken by the body."""
        with self._lock:
            if len(self._held) >= _PRUNE_AT:
                self._held = [h for h in self._held if not h.released]
            self._held.append(held)

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` with every slot it takes in this thread noted here.

        Only this thread's: tasks the body submits run in other threads with a
        copy of its context, and their slots are their own runs' to release."""
        self._thread = threading.get_ident()
        token = _scope.set(self)
        try:
            return fn()
        finally:
            _scope.reset(token)

    def owns_this_thread(self) -> bool:
        """Whether the calling thread is the one running the body."""
        return self._thread == threading.get_ident()

    def release_leftovers(self) -> int:
        """Release what the body left held (call it only once the body has ended).

        Idempotent: a release cut short stays unreleased and is made again,
        once here (the timeout's interrupt, itself an Exception, may land in the
        first) and by any later call."""
        with self._lock:
            left = [h for h in self._held if not h.released]
        for last_try in (False, True):
            for held in left:
                if held.released:
                    continue
                try:
                    held.release()
                except Exception as exc:  # lost, or unreachable: its lease expires by itself
                    if last_try or held.released:
                        logger.warning("while releasing slots a timed-out body left: %s", exc)
        if left:
            logger.info(
                "released slots of %s left held by a timed-out body",
                ", ".join(sorted({n for h in left for n in h.names})),
            )
        return len(left)


_scope: ContextVar[BodyScope | None] = ContextVar("headway_body_scope", default=None)
_lingering: ContextVar[list[threading.Event] | None] = ContextVar(
    "headway_lingering_bodies", default=None
)


def note_held(held: HeldSlots) -> None:
    """Called for every grant: note it in the running body's scope, if any."""
    scope = _scope.get()
    if scope is not None and held.lease_id is not None and scope.owns_this_thread():
        scope.add(held)


def note_lingering_body(done: threading.Event) -> None:
    """A timed-out body still runs (``done`` is set when it ends): slots held
    around it by a :class:`Lingering` wait for it before they are released."""
    bodies = _lingering.get()
    if bodies is not None:
        bodies.append(done)


def wait_for_lingering_bodies(cancel: threading.Event | None = None) -> bool:
    """Block until the timed-out bodies noted so far (by the enclosing
    :class:`Lingering`) have ended: a retry must not run beside an earlier
    attempt that still uses the same slots. False if ``cancel`` is set first."""
    bodies = _lingering.get()
    for done in list(bodies or ()):
        if cancel is None:
            done.wait()
            continue
        # Either event may come first; the cancel is checked a few times a second.
        while not done.wait(_CANCEL_CHECK_SECONDS):
            if cancel.is_set():
                return False
    return True


class Lingering:
    """Collects the bodies still running when slots held around them are released."""

    __slots__ = ("_bodies", "_token")

    def __init__(self) -> None:
        self._bodies: list[threading.Event] = []
        self._token = _lingering.set(self._bodies)

    def close(self) -> list[threading.Event]:
        """Stop collecting; the bodies that have not ended yet."""
        _lingering.reset(self._token)
        return [done for done in self._bodies if not done.is_set()]


def release_after(bodies: list[threading.Event], release: Callable[[], None]) -> None:
    """``release()`` now, or, while some of ``bodies`` still run, once they have all
    ended (from a daemon thread; the lease is renewed meanwhile)."""
    if not bodies:
        release()
        return

    def wait_then_release() -> None:
        for done in bodies:
            done.wait()
        release()

    threading.Thread(target=wait_then_release, name="headway-slots-after-body", daemon=True).start()
