"""``concurrency()`` and ``rate_limit()`` for synchronous code (threads included).

::

    from headway.concurrency.sync import concurrency, rate_limit

    with concurrency("db", occupy=2, timeout_seconds=10):
        ...  # at most the limit's slots are held at once, across processes

    rate_limit("api")  # waits until the token bucket has room

Both work inside and outside flows and tasks. The slots are released when the
block exits by return, exception or ``KeyboardInterrupt``. The signatures are
Prefect's (``prefect.concurrency.sync``), with headway's ``priority`` added.
"""

from __future__ import annotations

from types import TracebackType

from headway.concurrency._core import Acquisition, HolderSpec, Names, acquisition, release
from headway.concurrency._leases import HeldSlots
from headway.exceptions import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError

__all__ = [
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "HeldSlots",
    "concurrency",
    "rate_limit",
]


class _Concurrency:
    """The context manager ``concurrency()`` returns."""

    __slots__ = ("_acquisition", "_held", "_raise_lost")

    def __init__(self, acquisition: Acquisition, raise_lost: bool) -> None:
        self._acquisition = acquisition
        self._held: HeldSlots | None = None
        self._raise_lost = raise_lost

    def __enter__(self) -> HeldSlots:
        acquisition = self._acquisition
        self._held = acquisition.hold(acquisition.run())
        return self._held

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        release(held, raise_errors=exc_type is None and self._raise_lost)


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
) -> _Concurrency:
    """Hold ``occupy`` slots of each named limit while the block runs (all or nothing).

    ``timeout_seconds=None`` waits until granted; otherwise
    :class:`~headway.exceptions.AcquireConcurrencySlotTimeoutError` is raised when
    the slots are not granted in time. Requests are granted FIFO within
    ``priority`` (higher first). A name with no limit runs unlimited with a
    warning each time (``strict=True`` raises ConcurrencySlotAcquisitionError
    instead); a disabled limit is not applied; no names at all (``None``, ``[]``)
    run the block with no limit. ``occupy`` below 1 or above a limit raises
    ValidationError at once. The block's value is a :class:`HeldSlots`.

    Prefect's arguments keep their meaning: ``max_retries=0`` makes one attempt
    and raises ConcurrencySlotAcquisitionError when the slots are taken (a larger
    number bounds nothing: headway does not poll and retry, the request keeps its
    place in the queue and is woken when its turn comes, so bound the wait with
    ``timeout_seconds``); ``lease_duration`` is the lease's length in seconds
    (default ``HEADWAY_CONCURRENCY_LEASE_SECONDS``), renewed in the background
    while the block runs; ``holder`` (``{"type": "task_run" | "flow_run" |
    "deployment", "id": ...}``) is recorded on the lease.
    If the lease is lost while the block runs (the process was paused past it),
    leaving the block raises :class:`~headway.exceptions.LeaseLostError`, unless
    ``raise_on_lease_renewal_failure=False``, which only logs it.
    """
    return _Concurrency(
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


def rate_limit(
    names: Names,
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Take ``occupy`` tokens of each named rate limit, waiting until they are available.

    For limits with ``slot_decay_per_second > 0``: tokens are never given back;
    they drain at that rate. The wait is computed from the decay, not polled
    blindly. A limit without decay raises ValidationError; unknown names and
    timeouts behave as in :func:`concurrency`; no names return at once.
    """
    acquisition(names, occupy, mode="rate", timeout_seconds=timeout_seconds, strict=strict).run()
