"""The facts behind "why is this run waiting?": read-only queries over leases, waiters, runs.

Every slot is a lease row and every waiting request a waiter row (or, for a
deployment run held back by its limit, a SCHEDULED run whose ``blocked_on``
names the limit), so who holds a limit, who is ahead of a request and since
when are read here, not guessed. The orchestrator (``orchestration/explain.py``)
turns these facts into answers; it wraps its calls in one read transaction, so
an explanation sees one consistent snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from headway.core.clock import Clock
from headway.core.models import Holder, Lease
from headway.core.views import (
    DeploymentUsage,
    LimitView,
    Queued,
    QueuePlace,
    RunClaim,
    WaitingRun,
    WaitRequest,
)
from headway.store.db import Database
from headway.store.events import limit_stats_of
from headway.store.queries import explain as q


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


class Explain:
    """Read-only queries for explanations and status."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def run_claim(self, run_id: str) -> RunClaim | None:
        """A flow run's claim columns; None when no flow run has this id."""
        with self.db.read() as tx:
            r = tx.one(q.SELECT_RUN_CLAIM, {"id": run_id})
        if r is None:
            return None
        # ``blocked_on`` is '' for a run that waits on no limit (migration 0005).
        return RunClaim(
            r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]),
            None if r[7] is None else float(r[7]), float(r[8]), r[9] or None, r[10], r[11],
            r[12],
        )  # fmt: skip

    def waits_of(self, holder_id: str) -> list[WaitRequest]:
        """The live waiter rows of ``holder_id`` (a run id), one per limit."""
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_WAITS_OF_HOLDER, {"h": holder_id, "now": self.clock.now()})
        return [
            WaitRequest(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), r[5], int(r[6]), r[7],
                        _dt(r[8]))
            for r in rows
        ]  # fmt: skip

    def task_waits(self, flow_run_id: str) -> list[tuple[str, str, str]]:
        """Task runs of a flow run waiting for slots now: (task run id, name, limit)."""
        with self.db.read() as tx:
            rows = tx.execute(
                q.SELECT_TASK_WAITS_OF_FLOW_RUN, {"f": flow_run_id, "now": self.clock.now()}
            )
        return [(r[0], r[1], r[2]) for r in rows]

    def leases_of(self, holder_id: str) -> list[Lease]:
        """The slots ``holder_id`` holds now, one lease per row."""
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_LEASES_OF_HOLDER, {"h": holder_id})
        return [_lease(r) for r in rows]

    def limit_view(self, name: str, *, max_holders: int = 50) -> LimitView | None:
        """A limit's counters and its oldest holders; None when no limit has this name."""
        now = self.clock.now()
        with self.db.read() as tx:
            rows = tx.execute(q.SELECT_LIMIT_STATS, {"name": name, "now": now})
            if not rows:
                return None
            leases = tx.execute(q.SELECT_LEASES_OF_LIMIT, {"name": name, "n": max_holders})
        return LimitView(limit_stats_of(rows[0], now), tuple(_lease(r) for r in leases))

    def waiter_place(self, limit_name: str, priority: int, seq: int) -> QueuePlace:
        """The place of the waiter (priority, seq) in the queue of ``limit_name``."""
        params = {"name": limit_name, "p": priority, "seq": seq, "now": self.clock.now()}
        with self.db.read() as tx:
            count = tx.one(q.COUNT_WAITERS_AHEAD, params)
            rows = tx.execute(q.SELECT_WAITERS_AHEAD, params)
            total = tx.one(q.COUNT_WAITERS_OF_LIMIT, params)
        ahead = tuple(
            Queued(i + 1, r[0], r[1], int(r[2]), int(r[3]), _dt(r[4]), int(r[5]), r[6])
            for i, r in enumerate(rows)
        )
        n = int(count[0]) if count else 0
        return QueuePlace(
            n + 1, int(count[1]) if count else 0, ahead, int(total[0]) if total else 0
        )

    def blocked_place(self, limit_name: str, run: RunClaim) -> QueuePlace:
        """The place of a deployment run waiting on ``limit_name`` among the runs waiting on it.

        Blocked runs are claimed by priority (higher first), then scheduled time.
        """
        params: dict[str, Any] = {
            "b": limit_name,
            "p": run.priority,
            "t": run.expected_start if run.expected_start is not None else run.created,
            "c": run.created,
            "id": run.id,
        }
        return self._run_place(params, q.BLOCKED_PLACE)

    def pool_place(self, pool: str, queue: str | None, run: RunClaim) -> QueuePlace:
        """The place of a due run among the due runs of its pool (or queue) in claim order."""
        now = self.clock.now()
        params: dict[str, Any] = {
            "pool": pool,
            "queue": queue,
            "p": run.priority,
            "t": run.expected_start if run.expected_start is not None else run.created,
            "c": run.created,
            "id": run.id,
            "now": now,
        }
        return self._run_place(params, q.POOL_PLACE if queue is None else q.QUEUE_PLACE)

    def _run_place(self, params: dict[str, Any], place: q.PlaceStatements) -> QueuePlace:
        with self.db.read() as tx:
            count = tx.one(place.count_ahead, params)
            rows = tx.execute(place.select_ahead, params)
            total = tx.one(place.count_waiting, params)
        n = int(count[0]) if count else 0
        ahead = tuple(
            Queued(i + 1, "flow_run", r[0], 1, int(r[1]), _dt(r[2]),
                   None if r[3] is None else int(r[3]), r[4])
            for i, r in enumerate(rows)
        )  # fmt: skip
        return QueuePlace(n + 1, n, ahead, int(total[0]) if total else 0)

    def run_names(self, ids: Sequence[str]) -> dict[str, str]:
        """Names of the flow and task runs among ``ids``."""
        wanted = sorted({i for i in ids if i})
        if not wanted:
            return {}
        params = {f"i{n}": v for n, v in enumerate(wanted)}
        marks = ", ".join(f":i{n}" for n in range(len(wanted)))
        with self.db.read() as tx:
            rows = tx.execute(q.select_run_names(marks), params)
        return {r[0]: r[1] for r in rows}

    def deployment_usage(self, full_name: str, tags: Sequence[str]) -> DeploymentUsage:
        """Runs of a deployment now, and the tags and limits its recent runs used."""
        now = self.clock.now()
        with self.db.read() as tx:
            counts = tx.one(q.COUNT_DEPLOYMENT_RUNS, {"d": full_name, "now": now})
            recent = [r[0] for r in tx.execute(q.SELECT_RECENT_DEPLOYMENT_RUNS, {"d": full_name})]
            found_tags = set(tags)
            run_ids = list(recent)
            if recent:
                params = {f"r{n}": v for n, v in enumerate(recent)}
                marks = ", ".join(f":r{n}" for n in range(len(recent)))
                for task_id, raw in tx.execute(q.select_task_run_tags(marks), params):
                    run_ids.append(task_id)
                    found_tags.update(json.loads(raw or "[]"))
            used: set[str] = set()
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start : start + 500]
                params = {f"r{n}": v for n, v in enumerate(chunk)}
                marks = ", ".join(f":r{n}" for n in range(len(chunk)))
                used.update(
                    r[0] for r in tx.execute(q.select_limits_granted(marks), params) if r[0]
                )
        assert counts is not None
        return DeploymentUsage(
            active=int(counts[0]),
            waiting=int(counts[1]),
            due=int(counts[2]),
            task_tags=tuple(sorted(str(t) for t in found_tags)),
            limits_used=tuple(sorted(used)),
            recent_runs=len(recent),
        )

    def waiting_runs(self, *, limit: int = 20) -> list[WaitingRun]:
        """Runs held back by a limit now: deployment runs awaiting a slot, then waiters."""
        now = self.clock.now()
        with self.db.read() as tx:
            runs = tx.execute(q.SELECT_BLOCKED_RUNS, {"n": limit})
            waiters = tx.execute(q.SELECT_LIVE_WAITERS, {"now": now, "n": limit})
        out = [
            WaitingRun(r[0], "flow_run", r[1], r[2] or None, _dt(r[3]), r[4] or "awaiting a slot")
            for r in runs
        ]
        out += [
            WaitingRun(r[1], r[0], None, r[2], _dt(r[3]), f"{r[4]} slot(s), priority {r[5]}")
            for r in waiters
        ]
        names = self.run_names([w.run_id for w in out if w.run_id and w.name is None])
        out = [
            w if w.name is not None or w.run_id not in names else _named(w, names[w.run_id])
            for w in out
        ]
        out.sort(key=lambda w: w.since)
        return out[:limit]


def _named(w: WaitingRun, name: str) -> WaitingRun:
    return WaitingRun(w.run_id, w.kind, name, w.limit_name, w.since, w.detail)


def _lease(r: Any) -> Lease:
    # r: lease_id, limit_name, slots, holder_kind, holder_id, pid, host, created, expires
    return Lease(
        id=r[0],
        slots={r[1]: int(r[2])},
        holder=Holder(kind=r[3], id=r[4], pid=int(r[5]), host=r[6]),
        created=_dt(r[7]),
        expires=_dt(r[8]),
    )


__all__ = ["Explain"]
