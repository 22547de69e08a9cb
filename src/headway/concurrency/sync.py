"""``concurrency()`` and ``rate_limit()`` for synchronous code (threads included).

::

    from headway.concurrency.sync import concurrency, rate_limit

    with concurrency("db", occupy=2, timeout_seconds=10):
        ...  # at most the limit's slots are held at once, across processes

    rate_limit("api")  # waits until the token bucket has room

Both work inside and outside flows and tasks. The slots are released when the
block exits by return, exception or ``KeyboardInterrupt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from headway.concurrency._core import Acquisition, release
from headway.concurrency._leases import HeldSlots

__all__ = ["HeldSlots", "concurrency", "rate_limit"]


class _Concurrency:
    """The context manager ``concurrency()`` returns."""

    __slots__ = ("_acquisition", "_held")

    def __init__(self, acquisition: Acquisition) -> None:
        self._acquisition = acquisition
        self._held: HeldSlots | None = None

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
        release(held, raise_errors=exc_type is None)


def concurrency(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
    priority: int = 0,
) -> _Concurrency:
    """Hold ``occupy`` slots of each named limit while the block runs (all or nothing).

    ``timeout_seconds=None`` waits until granted; otherwise
    :class:`~headway.exceptions.AcquireConcurrencySlotTimeoutError` is raised when
    the slots are not granted in time. Requests are granted FIFO within
    ``priority`` (higher first). A name with no limit runs unlimited with one
    warning (``strict=True`` raises ConcurrencySlotAcquisitionError instead); a
    disabled limit is not applied. ``occupy`` below 1 or above a limit raises
    ValidationError at once. The block's value is a :class:`HeldSlots`; if the
    lease is lost while the block runs (the process was paused past it), leaving
    the block raises :class:`~headway.exceptions.LeaseLostError`.
    """
    return _Concurrency(
        Acquisition(
            names,
            occupy,
            mode="concurrency",
            timeout_seconds=timeout_seconds,
            strict=strict,
            priority=priority,
        )
    )


def rate_limit(
    names: str | Sequence[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Take ``occupy`` tokens of each named rate limit, waiting until they are available.

    For limits with ``slot_decay_per_second > 0``: tokens are never given back;
    they drain at that rate. The wait is computed from the decay, not polled
    blindly. A limit without decay raises ValidationError; unknown names and
    timeouts behave as in :func:`concurrency`.
    """
    Acquisition(names, occupy, mode="rate", timeout_seconds=timeout_seconds, strict=strict).run()
