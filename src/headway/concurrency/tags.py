"""Task-tag concurrency limits: a task run with tags holds a slot of each tag's limit.

A tag ``db`` is limited by the limit named ``tag:db`` (``headway concurrency-limit
create db 2``). The task engine wraps each run of a tagged task in
:func:`hold_tag_slots`: one slot of every existing, active tag limit, all or
nothing, held by a lease of kind ``task_run`` and released when the run ends.
Tags without a limit cost one short query and take nothing. The wait is FIFO,
like every other slot, and ends early if the flow run is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from types import TracebackType

from headway.client.base import Client
from headway.concurrency._core import Acquisition, release
from headway.concurrency._leases import HeldSlots
from headway.concurrency._scopes import Lingering, release_after
from headway.concurrency.asyncio import acquire, give_back
from headway.context import get_flow_run_context
from headway.core.limits import NAME_MAX, TAG_PREFIX, SlotWait
from headway.exceptions import ConcurrencySlotAcquisitionError, ValidationError

__all__ = ["TagSlots", "hold_tag_slots", "tag_limit_names"]

logger = logging.getLogger("headway.concurrency")


def tag_limit_names(tags: Iterable[str]) -> list[str]:
    """The limit names of ``tags`` (``tag:<tag>``); tags that cannot name a limit are skipped."""
    names = []
    for tag in dict.fromkeys(tags):
        if isinstance(tag, str) and tag.strip() and len(tag) <= NAME_MAX:
            names.append(TAG_PREFIX + tag)
    return names


class TagSlots:
    """Holds a task run's tag slots: ``with`` in sync code, ``async with`` in async code.

    In async code use ``async with``: a blocking wait would stop the event loop,
    and with it the tasks that hold the slots.
    """

    __slots__ = ("_acquisition", "_held", "_lingering")

    def __init__(self, acquisition: Acquisition | None) -> None:
        self._acquisition = acquisition
        self._held: HeldSlots | None = None
        self._lingering: Lingering | None = None

    @property
    def client(self) -> Client | None:
        """The client the slots are asked through (None when no tag has a limit)."""
        return self._acquisition.client if self._acquisition is not None else None

    @property
    def held(self) -> HeldSlots | None:
        """The held slots (None before entering, or when no tag has a limit)."""
        return self._held

    def __enter__(self) -> TagSlots:
        acquisition = self._acquisition
        if acquisition is not None:
            first = acquisition.try_once()
            if isinstance(first, SlotWait):
                if _in_event_loop():
                    # Blocking here would stop the loop, and with it the tasks that
                    # hold the slots: a deadlock. Fail clearly instead.
                    raise ConcurrencySlotAcquisitionError(
                        "tag slots of "
                        + ", ".join(acquisition.names)
                        + " must be awaited in async code: use `async with hold_tag_slots(...)`"
                    )
                first = acquisition.wait(first)
            held = acquisition.hold(first)
            self._held = held if held.lease_id is not None else None
        # Bodies that time out but still run (blocked in C code) keep these slots.
        self._lingering = Lingering()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        lingering, self._lingering = self._lingering, None
        bodies = lingering.close() if lingering is not None else []
        if held is not None:
            # Never before a timed-out body that still runs has ended: it still
            # does the work these slots guard.
            release_after(bodies, lambda: _give_back(held))

    async def __aenter__(self) -> TagSlots:
        if self._acquisition is not None:
            held = self._acquisition.hold(await acquire(self._acquisition))
            self._held = held if held.lease_id is not None else None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        await give_back(held, raise_errors=False)


def _give_back(held: HeldSlots) -> None:
    # A lost lease is reported, not raised: the task's own outcome stands.
    release(held, raise_errors=False)
    if held.lost:
        logger.warning(
            "task run %s lost its slots on %s while running",
            held.grant.lease_id,
            ", ".join(held.names),
        )


def hold_tag_slots(
    client: Client | None,
    tags: Iterable[str],
    *,
    task_run_id: str,
    flow_run_id: str | None,
) -> TagSlots:
    """The slots a task run with ``tags`` must hold while it runs (a context manager).

    Waits, without a timeout, until a slot of every limited tag is free; a
    cancelled flow run stops the wait (ConcurrencySlotAcquisitionError).
    """
    del flow_run_id  # the holder is the task run; the flow run is found from it
    names = tag_limit_names(tags)
    if not names:
        return TagSlots(None)
    try:
        acquisition = Acquisition(
            names,
            1,
            mode="concurrency",
            timeout_seconds=None,
            strict=False,
            holder_kind="task_run",
            holder_id=task_run_id,
            client=client,
            warn_unknown=False,
            cancel_event=_flow_cancel_event(),
        )
    except ValidationError:  # tags that are not valid limit names have no limit
        return TagSlots(None)
    return TagSlots(acquisition)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _flow_cancel_event() -> threading.Event | None:
    flow = get_flow_run_context()
    event = getattr(flow, "cancel_event", None) if flow is not None else None
    return event if isinstance(event, threading.Event) else None
