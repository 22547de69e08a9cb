"""``concurrency()`` and ``rate_limit()`` for asyncio code: the same API, awaited.

::

    from headway.concurrency.asyncio import concurrency, rate_limit

    async with concurrency("db", occupy=2):
        ...

    await rate_limit("api")

The logic is the synchronous one (:mod:`headway.concurrency._core`). The quick
first attempt and every release run on the event loop itself when the client
can do them without waiting (the embedded store, when no other writer holds
its lock: one short transaction, cheaper than a trip to a thread and back);
otherwise on a small shared thread pool. A wait runs on a thread of its own
(so waiting requests never starve the pool their holders need to release).
Cancelling the task, while it waits or while it holds, releases everything: a
grant that arrives just as the wait is cancelled is given straight back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import typing
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from headway.client.base import Client
from headway.concurrency._core import Acquisition, HolderSpec, Names, acquisition, release
from headway.concurrency._leases import HeldSlots
from headway.core.limits import SlotGrant
from headway.exceptions import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError

# The errors are importable from here, as from ``prefect.concurrency.asyncio``.
__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "HeldSlots",
    "concurrency",
    "rate_limit",
]

T = TypeVar("T")

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    # Short calls only (one attempt, one release): a few threads serve any load.
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="headway-slots"
                )
    return _pool


def _own_thread(fn: Callable[[], T]) -> concurrent.futures.Future[T]:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    threading.Thread(target=work, name="headway-slot-wait", daemon=True).start()
    return future


async def _offload(
    fn: Callable[[], T],
    *,
    on_abandon: Callable[[T], Any] | None = None,
    on_cancel: Callable[[], Any] | None = None,
    own_thread: bool = False,
    here: Client | None = None,
) -> T:
    """Run ``fn`` off the loop. If the awaiting task is cancelled, ``on_cancel`` runs
    (in a thread) and a result that still arrives goes to ``on_abandon``.

    With ``here``, ``fn`` (calls of that client) first runs on the loop if the
    client can do it without waiting; nothing awaits meanwhile, so nothing
    can cancel it half-way.
    """
    if here is not None:
        ran, result = here.attempt_here(fn)
        if ran:
            return typing.cast(T, result)
    future = _own_thread(fn) if own_thread else _executor().submit(fn)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            threading.Thread(target=on_cancel, daemon=True).start()
        if on_abandon is not None:
            handler = on_abandon

            def abandoned(done: concurrent.futures.Future[T]) -> None:
                if not done.cancelled() and done.exception() is None:
                    threading.Thread(target=handler, args=(done.result(),), daemon=True).start()

            future.add_done_callback(abandoned)
        raise


async def acquire(acquisition: Acquisition) -> SlotGrant:
    """The asyncio form of :meth:`Acquisition.run`, cancellable at any point."""

    def give_back(grant: object) -> None:
        if isinstance(grant, SlotGrant) and grant.lease_id is not None:
            acquisition.client.release_slots(grant.lease_id)

    first = await _offload(acquisition.try_once, on_abandon=give_back, here=_quick(acquisition))
    if isinstance(first, SlotGrant):
        return first
    return await _offload(
        lambda: acquisition.wait(first),
        on_abandon=give_back,
        on_cancel=acquisition.cancel,
        own_thread=True,
    )


async def give_back(held: HeldSlots | None, *, raise_errors: bool) -> None:
    """The asyncio form of :func:`release`; the release completes even if cancelled."""
    if held is not None and held.lease_id is not None:
        await _offload(lambda: release(held, raise_errors=raise_errors), here=held.client)


def _quick(acquisition: Acquisition) -> Client | None:
    # The client a first attempt can run on the loop with (None: no names, nothing to do).
    return None if acquisition.empty else acquisition.client


class _AsyncConcurrency:
    """The async context manager ``concurrency()`` returns."""

    __slots__ = ("_acquisition", "_held", "_raise_lost")

    def __init__(self, acquisition: Acquisition, raise_lost: bool) -> None:
        self._acquisition = acquisition
        self._held: HeldSlots | None = None
        self._raise_lost = raise_lost

    async def __aenter__(self) -> HeldSlots:
        acquisition = self._acquisition
        self._held = acquisition.hold(await acquire(acquisition))
        return self._held

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        await give_back(held, raise_errors=exc_type is None and self._raise_lost)


def concurrency(
    names: Names,
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float | None = None,
    strict: bool = False,
    holder: HolderSpec | None = None,
    raise_on_lease_renewal_failure: bool | None = None,
    *,
    priority: int = 0,
) -> _AsyncConcurrency:
    """``async with concurrency(...)``: see :func:`headway.concurrency.sync.concurrency`."""
    return _AsyncConcurrency(
        acquisition(
            names,
            occupy,
            mode="concurrency",
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            lease_duration=lease_duration,
            strict=strict,
            holder=holder,
            priority=priority,
        ),
        raise_on_lease_renewal_failure is not False,
    )


async def rate_limit(
    names: Names,
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """``await rate_limit(...)``: see :func:`headway.concurrency.sync.rate_limit`."""
    await acquire(
        acquisition(names, occupy, mode="rate", timeout_seconds=timeout_seconds, strict=strict)
    )
