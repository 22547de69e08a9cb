"""Prefect's v1 ``concurrency()`` for asyncio code, on headway's tag limits.

::

    from headway.concurrency.v1.asyncio import concurrency

    async with concurrency("db", task_run_id):
        ...

The wait runs off the event loop, and cancelling the task releases everything,
as :mod:`headway.concurrency.asyncio` does.
"""

from __future__ import annotations

from types import TracebackType
from uuid import UUID

from headway.concurrency._core import Acquisition
from headway.concurrency._leases import HeldSlots
from headway.concurrency.asyncio import acquire, give_back
from headway.concurrency.v1._tags import Tags, refused, tag_acquisition
from headway.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    ValidationError,
)

__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError", "concurrency"]


class _AsyncTagConcurrency:
    """The async context manager v1's ``concurrency()`` returns."""

    __slots__ = ("_acquisition", "_held")

    def __init__(self, acquisition: Acquisition) -> None:
        self._acquisition = acquisition
        self._held: HeldSlots | None = None

    async def __aenter__(self) -> HeldSlots:
        acquisition = self._acquisition
        try:
            grant = await acquire(acquisition)
        except AcquireConcurrencySlotTimeoutError:
            raise
        except ValidationError as exc:
            raise refused(acquisition, exc) from exc
        self._held = acquisition.hold(grant)
        return self._held

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        await give_back(held, raise_errors=False)


def concurrency(
    names: Tags, task_run_id: UUID | str, timeout_seconds: float | None = None
) -> _AsyncTagConcurrency:
    """``async with concurrency(...)``: see :func:`headway.concurrency.v1.sync.concurrency`."""
    return _AsyncTagConcurrency(tag_acquisition(names, task_run_id, timeout_seconds))
