"""What a deployment's concurrency limit does when it is full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from headway.core.deployments import (
    validate_concurrency_limit,
    validate_key_template,
    validate_strategy,
)
from headway.exceptions import ValidationError

CollisionStrategy = Literal["ENQUEUE", "CANCEL_NEW", "CANCEL_IN_PROGRESS"]

#: The range Prefect accepts for ``grace_period_seconds`` (one minute to one day).
GRACE_PERIOD_MIN = 60
GRACE_PERIOD_MAX = 86_400


def validate_grace_period(value: object) -> int:
    """A whole number of seconds from 60 to 86,400, as Prefect requires."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"grace_period_seconds must be a whole number, got {value!r}")
    if not GRACE_PERIOD_MIN <= value <= GRACE_PERIOD_MAX:
        raise ValidationError(
            f"grace_period_seconds must be between {GRACE_PERIOD_MIN} and"
            f" {GRACE_PERIOD_MAX}, got {value}"
        )
    return value


@dataclass(frozen=True)
class ConcurrencyLimitConfig:
    """A deployment's concurrency limit and what a run that finds it full does.

    ``limit`` runs of the deployment may be PENDING or RUNNING at once (per value
    of ``concurrency_key``, a template over the run's parameters such as
    ``"{customer_id}"``, when given). A run beyond it follows
    ``collision_strategy``: ``ENQUEUE`` waits (SCHEDULED/AwaitingConcurrencySlot)
    and starts, FIFO within priority, as soon as a slot frees; ``CANCEL_NEW`` ends
    CANCELLED with a reason naming the limit; ``CANCEL_IN_PROGRESS`` cancels the
    runs in progress and starts once they have stopped.

    ``grace_period_seconds`` (60 to 86,400, or None) is accepted and checked as
    Prefect checks it, and has nothing to govern: in Prefect it is how long a
    claimed run's slot survives before its infrastructure reports in; in
    headway the worker that claimed the run holds its slots by a lease it
    renews while the run's process lives, so a run that never starts gives its
    slot back when that process or worker dies (see docs/coming-from-prefect.md).
    """

    limit: int
    collision_strategy: CollisionStrategy = "ENQUEUE"
    concurrency_key: str | None = None
    grace_period_seconds: int | None = None

    def __post_init__(self) -> None:
        validate_concurrency_limit(self.limit)
        if self.grace_period_seconds is not None:
            validate_grace_period(self.grace_period_seconds)
        object.__setattr__(self, "collision_strategy", validate_strategy(self.collision_strategy))
        if self.concurrency_key is not None:
            validate_key_template(self.concurrency_key)


__all__ = ["CollisionStrategy", "ConcurrencyLimitConfig", "validate_grace_period"]
