"""Prefect's v1 ``concurrency()`` for synchronous code, on headway's tag limits.

::

    from headway.concurrency.v1.sync import concurrency

    with concurrency("db", task_run_id):
        ...  # holds a slot of tag limit "tag:db" for that task run
"""

from __future__ import annotations

from types import TracebackType
from uuid import UUID

from headway.concurrency._core import Acquisition, release
from headway.concurrency._leases import HeldSlots
from headway.concurrency.v1._tags import Tags, run, tag_acquisition
from headway.exceptions import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError

__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError", "concurrency"]


class _TagConcurrency:
    """The context manager v1's ``concurrency()`` returns."""

    __slots__ = ("_acquisition", "_held")

    def __init__(self, acquisition: Acquisition) -> None:
        self._acquisition = acquisition
        self._held: HeldSlots | None = None

    def __enter__(self) -> HeldSlots:
        self._held = self._acquisition.hold(run(self._acquisition))
        return self._held

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        # As for the task engine's tag slots: a lost lease is logged, not raised.
        release(held, raise_errors=False)


def concurrency(
    names: Tags, task_run_id: UUID | str, timeout_seconds: float | None = None
) -> _TagConcurrency:
    """Hold one slot of each tag's limit for ``task_run_id`` while the block runs.

    ``names`` are tags (``"db"`` is limited by ``tag:db``). ``timeout_seconds=None``
    waits until granted; otherwise AcquireConcurrencySlotTimeoutError (a
    TimeoutError) is raised in time. A tag whose limit can never admit the task
    raises ConcurrencySlotAcquisitionError at once.
    """
    return _TagConcurrency(tag_acquisition(names, task_run_id, timeout_seconds))
