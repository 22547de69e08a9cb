"""Claiming policy: the order due runs are claimed in, and what a run does when it collides.

Pure: the store reads the candidates and applies the outcome in its claim
transaction (``store/claims.py``); the rules live here.

- **Order.** FIFO within priority (run priority, then its queue's priority),
  and the concurrency keys of one deployment take turns, least recently
  served first, so one key with many waiting runs cannot starve the others
  (:func:`round_robin_order`).
- **Collisions.** A run that finds its deployment's limit full follows the
  deployment's collision strategy (:func:`collision`): it waits (ENQUEUE), is
  cancelled (CANCEL_NEW), or has the runs in progress cancelled and waits for
  them to stop (CANCEL_IN_PROGRESS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from headway.core.deployments import CANCEL_IN_PROGRESS, CANCEL_NEW
from headway.core.limits import WakeTarget
from headway.core.models import ClaimedRun

#: Fresh due runs read per queue in one claim: enough to fill any worker, bounded.
CLAIM_WINDOW = 16


@dataclass(frozen=True)
class ClaimResult:
    """What one claim did: the runs taken, who to wake, when the next run is due."""

    claimed: list[ClaimedRun]
    wake: list[WakeTarget]
    #: Epoch seconds of the next scheduled run in scope that is not due yet.
    next_due: float | None = None


@dataclass
class Candidate:
    """A due run a claim may take, with what its place in the claim order depends on."""

    id: str
    deployment: str | None
    queue: str | None
    priority: int
    expected: float
    parameters: str
    key: str | None
    state_name: str
    blocked_on: str | None
    created: float
    pool: str | None = None
    queue_priority: int = 0
    #: The deployment limit it needs (with its key), once known.
    limit: str | None = None
    #: Its place in the claim order (set by :func:`round_robin_order`).
    order: tuple[Any, ...] = field(default_factory=tuple)


def round_robin_order(candidates: list[Candidate], last_served: Mapping[str, float]) -> None:
    """Give each candidate its ``order``: FIFO within priority, keys of a deployment in turn.

    Runs keep the places FIFO gives their deployment; within those places the
    deployment's keys take turns, least recently served first, so one key with
    many waiting runs cannot starve the others. ``last_served`` maps
    ``"<deployment>\\x00<key>"`` to when a run of that key was last claimed.
    """
    for c in candidates:
        c.order = (-c.priority, -c.queue_priority, c.expected, c.created, c.id)
    groups: dict[tuple[str, int, int], list[Candidate]] = {}
    for c in candidates:
        if c.key is not None and c.deployment is not None:
            groups.setdefault((c.deployment, c.priority, c.queue_priority), []).append(c)
    for (deployment, _, _), members in groups.items():
        by_key: dict[str, list[Candidate]] = {}
        for c in sorted(members, key=lambda m: m.order):
            assert c.key is not None
            by_key.setdefault(c.key, []).append(c)
        if len(by_key) < 2:
            continue
        keys = sorted(
            by_key,
            key=lambda k: (
                last_served.get(f"{deployment}\x00{k}", float("-inf")),
                by_key[k][0].order,
            ),
        )
        turns: list[Candidate] = []
        depth = 0
        while len(turns) < len(members):
            for k in keys:
                if depth < len(by_key[k]):
                    turns.append(by_key[k][depth])
            depth += 1
        places = sorted(c.order for c in members)
        for c, place in zip(turns, places, strict=True):
            c.order = place


@dataclass(frozen=True)
class Collision:
    """What a run that found its deployment's limit full does, by its collision strategy."""

    #: End the new run CANCELLED with this message (CANCEL_NEW); it does not wait.
    cancel_new: str | None = None
    #: Cancel the runs in progress, and the older runs waiting, with this message
    #: (CANCEL_IN_PROGRESS); the new run then waits for them to stop.
    supersede: str | None = None

    @property
    def waits(self) -> bool:
        """Whether the new run waits (AwaitingConcurrencySlot) for the limit."""
        return self.cancel_new is None


def collision(strategy: str, run_id: str, limit_name: str, limit: int | None) -> Collision:
    """The outcome of ``strategy`` for run ``run_id`` finding ``limit_name`` (``limit``) full.

    Any strategy other than CANCEL_NEW and CANCEL_IN_PROGRESS is ENQUEUE: wait.
    """
    if strategy == CANCEL_NEW:
        limit_text = f"deployment concurrency limit {limit_name!r} ({limit})"
        return Collision(cancel_new=f"{limit_text} is full; collision strategy CANCEL_NEW")
    if strategy == CANCEL_IN_PROGRESS:
        return Collision(
            supersede=f"superseded by newer run {run_id} (CANCEL_IN_PROGRESS on {limit_name!r})"
        )
    return Collision()


__all__ = [
    "CLAIM_WINDOW",
    "Candidate",
    "ClaimResult",
    "Collision",
    "collision",
    "round_robin_order",
]
