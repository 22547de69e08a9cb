"""The one implementation of the v1 API; ``sync`` and ``asyncio`` wrap it."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from headway.concurrency._core import Acquisition
from headway.concurrency.tags import tag_limit_names
from headway.core.limits import SlotGrant
from headway.exceptions import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    ValidationError,
)

#: What v1's ``concurrency()`` accepts as names: a tag, several, or none.
Tags = str | Sequence[str] | None


def tag_acquisition(
    names: Tags, task_run_id: UUID | str, timeout_seconds: float | None
) -> Acquisition:
    """One slot of every limited tag in ``names``, held for the task run ``task_run_id``."""
    tags = [names] if isinstance(names, str) else list(names or ())
    if tags and (task_run_id is None or not str(task_run_id).strip()):
        raise ValidationError("task_run_id is required")
    return Acquisition(
        tag_limit_names(tags),
        1,
        mode="concurrency",
        timeout_seconds=timeout_seconds,
        strict=False,
        holder_kind="task_run",
        holder_id=str(task_run_id),
        warn_unknown=False,
    )


def refused(acquisition: Acquisition, exc: ValidationError) -> ConcurrencySlotAcquisitionError:
    """A request the limits refuse outright (a limit of 0 never admits a task):
    Prefect raises ConcurrencySlotAcquisitionError, not a validation error."""
    tags = [n.removeprefix("tag:") for n in acquisition.names]
    return ConcurrencySlotAcquisitionError(f"unable to acquire concurrency limits {tags!r}: {exc}")


def run(acquisition: Acquisition) -> SlotGrant:
    """Block until granted (sync); the errors Prefect's v1 raises."""
    try:
        return acquisition.run()
    except AcquireConcurrencySlotTimeoutError:
        raise
    except ValidationError as exc:
        raise refused(acquisition, exc) from exc
