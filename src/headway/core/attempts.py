"""What one attempt to take slots comes back with (the store's answer to the policy)."""

from __future__ import annotations

from dataclasses import dataclass

from headway.core.limits import SlotGrant, SlotWait, WakeTarget


@dataclass(frozen=True)
class Attempt:
    """The outcome of one acquire attempt, and the waiters to notify after it."""

    grant: SlotGrant | None = None
    wait: SlotWait | None = None
    #: The waiter's rows vanished (cancelled, or expired) and it was not allowed to re-queue.
    gone: bool = False
    wake: tuple[WakeTarget, ...] = ()
    #: Why the request was refused outright: its holder's run has ended (store/slots/run_waits.py).
    refused: str = ""


__all__ = ["Attempt"]
