"""What a deployment's concurrency limit does when it is full."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from headway.core.deployments import (
    validate_concurrency_limit,
    validate_key_template,
    validate_strategy,
)

CollisionStrategy = Literal["ENQUEUE", "CANCEL_NEW", "CANCEL_IN_PROGRESS"]


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
    """

    limit: int
    collision_strategy: CollisionStrategy = "ENQUEUE"
    concurrency_key: str | None = None

    def __post_init__(self) -> None:
        validate_concurrency_limit(self.limit)
        object.__setattr__(self, "collision_strategy", validate_strategy(self.collision_strategy))
        if self.concurrency_key is not None:
            validate_key_template(self.concurrency_key)


__all__ = ["CollisionStrategy", "ConcurrencyLimitConfig"]
