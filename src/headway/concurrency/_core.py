"""The one implementation of ``concurrency()`` and ``rate_limit()``; sync and asyncio wrap it.

A request is first tried once (the uncontended fast path: one short
transaction, nothing queued). If it must wait, it queues under a waiter id and
waits through the client: in process, the embedded store wakes it by
notification; over HTTP, by long polls. Whatever ends the wait early (the
timeout, an exception, ``KeyboardInterrupt``, a cancelled asyncio task) takes
the request out of the queue, so a waiter that gives up never blocks others.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from headway.client.base import Client, get_client
from headway.concurrency._leases import HeldSlots, hold
from headway.core.limits import (
    Mode,
    SlotGrant,
    SlotWait,
    validate_names,
    validate_occupy,
    validate_priority,
    validate_timeout,
)
from headway.exceptions import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError

logger = logging.getLogger("headway.concurrency")

# How long one wait call may block when something else can also end the wait
# (a flow run's cancel event): the event is checked between calls.
_CANCEL_CHECK_SECONDS = 0.5

_warned: set[str] = set()
_warned_lock = threading.Lock()


class Acquisition:
    """One request for slots: validated up front, then tried, then (maybe) waited for."""

    def __init__(
        self,
        names: str | Sequence[str],
        occupy: int,
        *,
        mode: Mode,
        timeout_seconds: float | None,
        strict: bool,
        priority: int = 0,
        holder_kind: str = "code",
        holder_id: str | None = None,
        client: Client | None = None,
        warn_unknown: bool = True,
        cancel_event: threading.Event | None = None,
    ) -> None:
        # Bad input fails here, at once: never a hang.
        self.names = validate_names(names)
        self.occupy = validate_occupy(occupy)
        self.timeout = validate_timeout(timeout_seconds)
        self.priority = validate_priority(priority)
        self.mode: Mode = mode
        self.strict = bool(strict)
        self.holder_kind = holder_kind
        self.holder_id = holder_id if holder_id is not None else _current_run_id()
        self.client = client if client is not None else get_client()
        self.warn_unknown = warn_unknown
        self.waiter_id = ""  # chosen when the request first has to queue
        self.cancel_event = cancel_event
        self._cancelled = False

    def _call(self, timeout: float | None, waiter_id: str | None) -> SlotGrant | SlotWait:
        return self.client.acquire_slots(
            self.names,
            self.occupy,
            mode=self.mode,
            priority=self.priority,
            holder_kind=self.holder_kind,
            holder_id=self.holder_id,
            timeout=timeout,
            waiter_id=waiter_id,
            strict=self.strict,
        )

    def run(self) -> SlotGrant:
        """Block until granted; AcquireConcurrencySlotTimeoutError after the timeout."""
        first = self.try_once()
        if isinstance(first, SlotGrant):
            return first
        return self.wait(first)

    def try_once(self) -> SlotGrant | SlotWait:
        """The fast path: one attempt that leaves nothing queued when it fails."""
        first = self._call(0.0, None)
        if isinstance(first, SlotGrant):
            return self._granted(first)
        if self.timeout == 0:
            raise self._timeout_error(first)
        return first

    def wait(self, last: SlotWait) -> SlotGrant:
        """Queue and block until granted, timed out, or cancelled (from another thread)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self.waiter_id = uuid.uuid4().hex
        done = False
        try:
            while True:
                if self._stopped():
                    raise ConcurrencySlotAcquisitionError("the wait for slots was cancelled")
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                chunk = remaining
                if self.cancel_event is not None:
                    chunk = (
                        _CANCEL_CHECK_SECONDS
                        if chunk is None
                        else min(chunk, _CANCEL_CHECK_SECONDS)
                    )
                result = self._call(chunk, self.waiter_id)
                if isinstance(result, SlotGrant):
                    done = True
                    if self._stopped():
                        # Granted just as the wait was abandoned: give it straight back.
                        if result.lease_id is not None:
                            self.client.release_slots(result.lease_id)
                        raise ConcurrencySlotAcquisitionError("the wait for slots was cancelled")
                    return self._granted(result)
                last = result
                if deadline is not None and time.monotonic() >= deadline:
                    raise self._timeout_error(last)
        finally:
            if not done:
                self._leave_queue()

    def _stopped(self) -> bool:
        return self._cancelled or (self.cancel_event is not None and self.cancel_event.is_set())

    def cancel(self) -> None:
        """Stop waiting (from another thread): the waiting call returns, the request leaves."""
        self._cancelled = True
        self._leave_queue()

    def _leave_queue(self) -> None:
        if not self.waiter_id:
            return
        try:
            self.client.cancel_slot_wait(self.waiter_id)
        except Exception as exc:  # the row expires by itself
            logger.warning("could not leave the slot queue: %s", exc)

    def _granted(self, grant: SlotGrant) -> SlotGrant:
        if grant.unknown and self.warn_unknown:
            _warn_unknown(grant.unknown)
        return grant

    def _timeout_error(self, wait: SlotWait) -> AcquireConcurrencySlotTimeoutError:
        return AcquireConcurrencySlotTimeoutError(
            f"{self.occupy} slot(s) of {', '.join(repr(n) for n in self.names)} not granted"
            f" within {self.timeout:g} s: {wait.reason}"
        )

    def hold(self, grant: SlotGrant) -> HeldSlots:
        """Keep a granted lease renewed until released."""
        return hold(self.client, grant)


def _warn_unknown(names: Sequence[str]) -> None:
    fresh = []
    with _warned_lock:
        for name in names:
            if name not in _warned:
                _warned.add(name)
                fresh.append(name)
    for name in fresh:
        logger.warning(
            "No concurrency limit named %r: running without it (create one with"
            " `headway gcl create %s --limit N`, or pass strict=True to fail instead)",
            name,
            name,
            extra={"limit": name, "action": "unlimited"},
        )


def _current_run_id() -> str | None:
    # The task run (or else flow run) the calling code belongs to, if any.
    global _run_vars
    if _run_vars is None:
        try:
            from headway.context import flow_run_var, task_run_var
        except ImportError:
            _run_vars = ()
        else:
            _run_vars = (task_run_var, flow_run_var)
    if not _run_vars:
        return None
    task = _run_vars[0].get()
    if task is not None:
        return str(task.task_run_id)
    flow = _run_vars[1].get()
    return str(flow.flow_run_id) if flow is not None else None


_run_vars: tuple[Any, ...] | None = None


def release(held: HeldSlots | None, *, raise_errors: bool) -> None:
    """Give held slots back. LeaseLostError (or a store error) is raised only when
    ``raise_errors``: never over an exception already on its way out of the block."""
    if held is None:
        return
    try:
        held.release()
    except Exception as exc:
        if raise_errors:
            raise
        logger.warning("while leaving a concurrency block: %s", exc)
