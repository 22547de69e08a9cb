"""What a claim may take: due runs per queue, runs waiting on a limit with room, in bounded reads.

Fresh runs are read per queue from the claim index (oldest due first, a
bounded window); runs waiting on a deployment limit (``blocked_on``) are read
back, per limit, only when that limit has room, found by a skip scan over the
distinct limits waited on. Functions over the claim's transaction
(``store/claims.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from headway.core.claiming import CLAIM_WINDOW, Candidate
from headway.core.deployments import queue_limit_name
from headway.core.limits import decayed
from headway.store.db import Row, Tx
from headway.store.queries import deployments as q
from headway.store.sql import in_list


@dataclass(frozen=True)
class Scope:
    """What one claim may take: a pool's eligible queues, or served deployments."""

    pool: str | None
    queues: list[tuple[str, int]]
    deployments: list[str]


def candidate_of(row: Row, queue_priority: int) -> Candidate:
    """A :class:`Candidate` from a row of ``queries.deployments.CANDIDATE_COLUMNS``."""
    return Candidate(
        id=row[0],
        deployment=row[1],
        queue=row[2],
        priority=int(row[3]),
        expected=float(row[4]),
        parameters=row[5],
        key=row[6],
        state_name=row[7],
        blocked_on=row[8],
        created=float(row[9]),
        pool=row[10],
        queue_priority=queue_priority,
    )


@dataclass(frozen=True)
class DeploymentInfo:
    """What a claim needs of a candidate's deployment."""

    limit: int | None
    strategy: str
    key_template: str | None
    entrypoint: str | None


def room_on(tx: Tx, names: Sequence[str], now: float) -> dict[str, float]:
    """Free slots per limit name; names without an active limit are unlimited."""
    out = dict.fromkeys(names, float("inf"))
    if not names:
        return out
    params: dict[str, Any] = {}
    marks = in_list("n", list(names), params)
    for name, limit, active, slots, decay, at in tx.execute(q.select_limits_room(marks), params):
        if bool(active):
            out[name] = float(limit) - decayed(float(slots), float(decay), float(at), now)
    return out


def fresh_candidates(
    tx: Tx, scope: Scope, room: dict[str, float], limit: int, now: float
) -> list[Candidate]:
    """Due runs not waiting on a limit: per queue with room, oldest first, a bounded window."""
    window = max(CLAIM_WINDOW, limit * 4)
    out: list[Candidate] = []
    if scope.pool is None:
        params: dict[str, Any] = {"now": now, "n": window}
        marks = in_list("d", scope.deployments, params)
        rows = tx.execute(q.select_due_runs_of_deployments(marks), params)
        return [candidate_of(r, 0) for r in rows]
    for queue, priority in scope.queues:
        if room[queue_limit_name(scope.pool, queue)] < 1:
            continue
        rows = tx.execute(
            q.SELECT_DUE_RUNS_OF_QUEUE,
            {"p": scope.pool, "q": queue, "now": now, "n": window},
        )
        out.extend(candidate_of(r, priority) for r in rows)
    return out


def blocked_candidates(tx: Tx, scope: Scope, limit: int, now: float) -> list[Candidate]:
    """The first runs waiting on each deployment limit that has room now, in scope."""
    # A skip scan: one index probe per distinct limit waited on, however many wait.
    groups = [r[0] for r in tx.execute(q.SELECT_LIMITS_WAITED_ON)]
    if not groups:
        return []
    room = room_on(tx, groups, now)
    queue_priority = dict(scope.queues)
    out: list[Candidate] = []
    for group in groups:
        free = room[group]
        if free < 1:
            continue
        take = int(min(free, max(limit, 1))) if free != float("inf") else max(limit, 1)
        out.extend(
            c
            for c in group_heads(tx, group, take)
            if (scope.pool is None and c.pool is None and c.deployment in scope.deployments)
            or (scope.pool is not None and c.pool == scope.pool and c.queue in queue_priority)
        )
    for c in out:
        c.queue_priority = queue_priority.get(c.queue or "", 0)
    return out


def group_heads(tx: Tx, group: str, take: int) -> list[Candidate]:
    """The first runs waiting on ``group``: highest priority first, then FIFO.

    One index probe per priority level present (a skip scan down the
    priorities), so the cost does not grow with the number waiting.
    """
    heads: list[Candidate] = []
    level = tx.one(q.SELECT_TOP_PRIORITY_WAITING, {"b": group})
    while level is not None and level[0] is not None and len(heads) < take:
        rows = tx.execute(
            q.SELECT_WAITING_RUNS_AT_PRIORITY,
            {"b": group, "p": int(level[0]), "n": take - len(heads)},
        )
        heads.extend(candidate_of(r, 0) for r in rows)
        level = tx.one(q.SELECT_NEXT_PRIORITY_WAITING, {"b": group, "p": int(level[0])})
    return heads


def deployment_infos(tx: Tx, names: set[str]) -> dict[str, DeploymentInfo]:
    """The limit, strategy, key template and entrypoint of each deployment named."""
    if not names:
        return {}
    params: dict[str, Any] = {}
    marks = in_list("d", sorted(names), params)
    return {
        r[0]: DeploymentInfo(None if r[1] is None else int(r[1]), r[2], r[3], r[4])
        for r in tx.execute(q.select_deployment_infos(marks), params)
    }


def last_served(tx: Tx, candidates: Sequence[Candidate]) -> dict[str, float]:
    """When each concurrency key of the candidates' deployments last had a run claimed."""
    deps = sorted({c.deployment for c in candidates if c.key is not None and c.deployment})
    if not deps:
        return {}
    params: dict[str, Any] = {}
    marks = in_list("d", deps, params)
    return {
        f"{r[0]}\x00{r[1]}": float(r[2])
        for r in tx.execute(q.select_keys_last_served(marks), params)
    }


def next_due_at(tx: Tx, scope: Scope, now: float) -> float | None:
    """Epoch seconds of the next scheduled run in scope that is not due yet (None: none)."""
    if scope.pool is None:
        params: dict[str, Any] = {"now": now}
        marks = in_list("d", scope.deployments, params)
        row = tx.one(q.select_next_due_of_deployments(marks), params)
        return None if row is None or row[0] is None else float(row[0])
    best: float | None = None
    for queue, _ in scope.queues:
        row = tx.one(q.SELECT_NEXT_DUE_OF_QUEUE, {"p": scope.pool, "q": queue, "now": now})
        if row is not None and row[0] is not None:
            best = float(row[0]) if best is None else min(best, float(row[0]))
    return best


__all__ = [
    "DeploymentInfo",
    "Scope",
    "blocked_candidates",
    "candidate_of",
    "deployment_infos",
    "fresh_candidates",
    "group_heads",
    "last_served",
    "next_due_at",
    "room_on",
]
