"""The one implementation of ``concurrency()`` and ``rate_limit()``; sync and asyncio wrap it.

A request is first tried once (the uncontended fast path: one short
transaction, nothing queued). If it must wait, it queues under a waiter id and
waits through the client: in process, the embedded store wakes it by
notification; over HTTP, by long polls. Whatever ends the wait early (the
timeout, an exception, ``KeyboardInterrupt``, a cancelled asyncio task) takes
the request out of the queue, so a waiter that gives up never blocks others.

No names (``None`` or an empty list) is a request for nothing: it is granted at
once, touches no store and holds no lease, as in Prefect.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from headway.client.base import Client, get_client
from headway.concurrency._leases import HeldSlots, hold
from headway.context import flow_run_var, task_run_var
from headway.core.limits import (
    HOLDER_KINDS,
    Mode,
    SlotGrant,
    SlotWait,
    validate_lease_seconds,
    validate_names,
    validate_occupy,
    validate_priority,
    validate_timeout,
)
from headway.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    ValidationError,
)
from headway.logging import get_run_logger

logger = logging.getLogger("headway.concurrency")

# How long one wait call may block when something else can also end the wait
# (a flow run's cancel event): the event is checked between calls.
_CANCEL_CHECK_SECONDS = 0.5

#: What ``concurrency()`` and ``rate_limit()`` accept as names: one, several, or none.
Names = str | Sequence[str] | None
#: Prefect's lease holder: ``{"type": ..., "id": ...}``, or an object with those attributes.
HolderSpec = Mapping[str, Any] | Any


class Acquisition:
    """One request for slots: validated up front, then tried, then (maybe) waited for."""

    def __init__(
        self,
        names: Names,
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
        max_retries: int | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.waiter_id = ""  # chosen when the request first has to queue
        self.cancel_event = cancel_event
        self._cancelled = False
        self.mode: Mode = mode
        self.strict = bool(strict)
        self.warn_unknown = warn_unknown
        #: No names: nothing to take (``concurrency([])`` runs unlimited, as in Prefect).
        self.empty = names is None or (not isinstance(names, str) and len(names) == 0)
        if self.empty:
            self.names: tuple[str, ...] = ()
            self.occupy = occupy if isinstance(occupy, int) else 1
            self.timeout: float | None = None
            self.priority = 0
            self.max_retries: int | None = None
            self.lease_seconds: float | None = None
            self.holder_kind, self.holder_id = holder_kind, holder_id
            self._client = client
            return
        assert names is not None
        # Bad input fails here, at once: never a hang.
        self.names = validate_names(names)
        self.occupy = validate_occupy(occupy)
        self.timeout = validate_timeout(timeout_seconds)
        self.priority = validate_priority(priority)
        self.max_retries = validate_max_retries(max_retries)
        # Prefect's lease_duration; None keeps headway's own default lease.
        self.lease_seconds = (
            None if lease_seconds is None else validate_lease_seconds(lease_seconds)
        )
        self.holder_kind = holder_kind
        self.holder_id = holder_id if holder_id is not None else _current_run_id()
        self._client = client if client is not None else get_client()

    @property
    def client(self) -> Client:
        """The client the request goes through (the default one, found on first use)."""
        if self._client is None:
            self._client = get_client()
        return self._client

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
            lease_seconds=self.lease_seconds,
        )

    def run(self) -> SlotGrant:
        """Block until granted; AcquireConcurrencySlotTimeoutError after the timeout.

        A request that may wait queues in its first attempt, in the same
        transaction (and, over HTTP, the same request) that found no room: a
        separate try first would cost a contended request one transaction more
        under the store's write lock, and each of those is paid by every grant.
        """
        if self.empty or self.timeout == 0 or self.max_retries == 0:
            first = self.try_once()
            if isinstance(first, SlotGrant):
                return first
            return self.wait(first)
        if self.cancel_event is not None:
            return self.wait(None)  # named, so that the cancel can end the wait
        # One call that owns its place in the queue: it is granted, or it leaves
        # the queue itself when the timeout passes (or the caller is interrupted).
        # Being the request's first, it is looked up nowhere: as cheap as a try.
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = self._call(remaining, None)
            if isinstance(result, SlotGrant):
                return self._granted(result)
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout_error(result)
            # Its place was lost (it expired while the process was paused): again.

    def try_once(self) -> SlotGrant | SlotWait:
        """The fast path: one attempt that leaves nothing queued when it fails."""
        if self.empty:
            return SlotGrant(lease_id=None, names=(), slots=self.occupy, mode=self.mode)
        first = self._call(0.0, None)
        if isinstance(first, SlotGrant):
            return self._granted(first)
        if self.timeout == 0:
            raise self._timeout_error(first)
        if self.max_retries == 0:
            # Prefect's max_retries=0: one attempt, and a refusal is final.
            raise ConcurrencySlotAcquisitionError(
                f"{self.occupy} slot(s) of {', '.join(repr(n) for n in self.names)} not"
                f" granted and max_retries=0 allows no retry: {first.reason}"
            )
        return first

    def wait(self, last: SlotWait | None) -> SlotGrant:
        """Queue and block until granted, timed out, or cancelled (from another thread).

        ``last`` is the refusal of a first attempt, if one was made.
        """
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
            _warn_unknown(grant.unknown, everything=not grant.names and not grant.inactive)
        return grant

    def _timeout_error(self, wait: SlotWait) -> AcquireConcurrencySlotTimeoutError:
        return AcquireConcurrencySlotTimeoutError(
            f"{self.occupy} slot(s) of {', '.join(repr(n) for n in self.names)} not granted"
            f" within {self.timeout:g} s: {wait.reason}"
        )

    def hold(self, grant: SlotGrant) -> HeldSlots:
        """Keep a granted lease renewed until released."""
        # No lease (no names): no client is needed, and none is opened for it.
        return hold(self.client if grant.lease_id is not None else self._client, grant)


def acquisition(
    names: Names,
    occupy: int,
    *,
    mode: Mode,
    timeout_seconds: float | None,
    strict: bool,
    max_retries: int | None = None,
    lease_duration: float | None = None,
    holder: HolderSpec | None = None,
    priority: int = 0,
) -> Acquisition:
    """An :class:`Acquisition` from the arguments of Prefect's ``concurrency()``."""
    kind, ident = "code", None
    if holder is not None and names:
        kind, ident = holder_of(holder)
    return Acquisition(
        names,
        occupy,
        mode=mode,
        timeout_seconds=timeout_seconds,
        strict=strict,
        priority=priority,
        holder_kind=kind,
        holder_id=ident,
        max_retries=max_retries,
        lease_seconds=lease_duration,
    )


def validate_max_retries(value: object) -> int | None:
    """Prefect's ``max_retries``: None (no bound) or a whole number, at least 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"max_retries must be None or a whole number >= 0, got {value!r}")
    return value


def holder_of(holder: object) -> tuple[str, str | None]:
    """Prefect's ``holder`` (``{"type": ..., "id": ...}`` or an object with
    ``type`` and ``id``) as headway's holder kind and id."""
    if isinstance(holder, Mapping):
        kind, ident = holder.get("type"), holder.get("id")
    else:
        kind, ident = getattr(holder, "type", None), getattr(holder, "id", None)
    if not isinstance(kind, str) or kind not in HOLDER_KINDS:
        kinds = ", ".join(k for k in HOLDER_KINDS if k != "code")
        raise ValidationError(f"holder type must be one of {kinds}; got {kind!r}")
    if ident is None or not str(ident).strip():
        raise ValidationError("holder id is required")
    return kind, str(ident)


def _warn_unknown(names: Sequence[str], *, everything: bool) -> None:
    # Every time, as Prefect does: one warning per process hid a typo in a
    # long-running worker from every run after the first.
    listed = ", ".join(repr(n) for n in names)
    what = "the block runs without a limit" if everything else "the block runs without them"
    message = (
        f"No concurrency limit named {listed}: {what} (create one with"
        f" `headway gcl create {names[0]} --limit N`, or pass strict=True to fail instead)"
    )
    extra = {"limit": ",".join(names), "action": "unlimited"}
    run_logger = _run_logger()
    if run_logger is not None:
        run_logger.warning(message, extra=extra)
    else:
        logger.warning(message, extra=extra)


def _current_run_id() -> str | None:
    # The task run (or else flow run) the calling code belongs to, if any.
    task = task_run_var.get()
    if task is not None:
        return str(task.task_run_id)
    flow = flow_run_var.get()
    return str(flow.flow_run_id) if flow is not None else None


def _run_logger() -> Any:
    # The current run's logger, so the warning reaches the run's logs; None outside runs.
    if task_run_var.get() is None and flow_run_var.get() is None:
        return None
    return get_run_logger()


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
