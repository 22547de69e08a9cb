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
    MAX_LISTED,
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
            r = tx.one(
                "SELECT id, state_type, state_name, deployment, work_pool, work_queue, priority,"
                " expected_start_time, created, blocked_on, concurrency_key, worker_id, lease_id"
                " FROM flow_runs WHERE id = :id",
                {"id": run_id},
            )
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
            rows = tx.execute(
                "SELECT waiter_id, limit_name, seq, slots, priority, holder_kind, pid, host,"
                " created FROM waiters WHERE holder_id = :h AND expires > :now"
                " ORDER BY seq, limit_name",
                {"h": holder_id, "now": self.clock.now()},
            )
        return [
            WaitRequest(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), r[5], int(r[6]), r[7],
                        _dt(r[8]))
            for r in rows
        ]  # fmt: skip

    def task_waits(self, flow_run_id: str) -> list[tuple[str, str, str]]:
        """Task runs of a flow run waiting for slots now: (task run id, name, limit)."""
        with self.db.read() as tx:
            rows = tx.execute(
                "SELECT DISTINCT t.id, t.name, w.limit_name FROM waiters w JOIN task_runs t"
                " ON t.id = w.holder_id WHERE t.flow_run_id = :f AND w.expires > :now"
                " ORDER BY t.id, w.limit_name LIMIT 50",
                {"f": flow_run_id, "now": self.clock.now()},
            )
        return [(r[0], r[1], r[2]) for r in rows]

    def leases_of(self, holder_id: str) -> list[Lease]:
        """The slots ``holder_id`` holds now, one lease per row."""
        with self.db.read() as tx:
            rows = tx.execute(
                "SELECT lease_id, limit_name, slots, holder_kind, holder_id, pid, host, created,"
                " expires FROM leases WHERE holder_id = :h ORDER BY created, limit_name",
                {"h": holder_id},
            )
        return [_lease(r) for r in rows]

    def limit_view(self, name: str, *, max_holders: int = 50) -> LimitView | None:
        """A limit's counters and its oldest holders; None when no limit has this name."""
        now = self.clock.now()
        with self.db.read() as tx:
            rows = tx.execute(
                "SELECT name, slot_limit, active, active_slots, slot_decay_per_second,"
                " decayed_at, created, grants, denials, expiries, releases, total_wait_seconds,"
                " total_hold_seconds, (SELECT COUNT(*) FROM waiters w WHERE w.limit_name ="
                " limits.name AND w.expires > :now), (SELECT COUNT(*) FROM leases l"
                " WHERE l.limit_name = limits.name), (SELECT COALESCE(SUM((:now - l.created)"
                " * l.slots), 0) FROM leases l WHERE l.limit_name = limits.name)"
                " FROM limits WHERE name = :name",
                {"name": name, "now": now},
            )
            if not rows:
                return None
            leases = tx.execute(
                "SELECT lease_id, limit_name, slots, holder_kind, holder_id, pid, host, created,"
                " expires FROM leases WHERE limit_name = :name ORDER BY created, lease_id"
                " LIMIT :n",
                {"name": name, "n": max_holders},
            )
        return LimitView(limit_stats_of(rows[0], now), tuple(_lease(r) for r in leases))

    def waiter_place(self, limit_name: str, priority: int, seq: int) -> QueuePlace:
        """The place of the waiter (priority, seq) in the queue of ``limit_name``."""
        params = {"name": limit_name, "p": priority, "seq": seq, "now": self.clock.now()}
        ahead_of = (
            "FROM waiters WHERE limit_name = :name AND expires > :now"
            " AND (priority > :p OR (priority = :p AND seq < :seq))"
        )
        with self.db.read() as tx:
            count = tx.one(f"SELECT COUNT(*), COALESCE(SUM(slots), 0) {ahead_of}", params)
            rows = tx.execute(
                "SELECT holder_kind, holder_id, slots, priority, created, pid, host"
                f" {ahead_of} ORDER BY priority DESC, seq LIMIT {MAX_LISTED}",
                params,
            )
            total = tx.one(
                "SELECT COUNT(*) FROM waiters WHERE limit_name = :name AND expires > :now", params
            )
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
        ahead_of = (
            "FROM flow_runs WHERE blocked_on = :b AND state_type = 'SCHEDULED' AND id <> :id"
            " AND (priority > :p OR (priority = :p AND (expected_start_time < :t"
            " OR (expected_start_time = :t AND (created < :c OR (created = :c AND id < :id))))))"
        )
        return self._run_place(params, ahead_of, "blocked_on = :b AND state_type = 'SCHEDULED'")

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
        scope = "work_pool = :pool" + (" AND work_queue = :queue" if queue is not None else "")
        due = (
            f"{scope} AND state_type = 'SCHEDULED' AND blocked_on = ''"
            " AND expected_start_time <= :now"
        )
        ahead_of = (
            f"FROM flow_runs WHERE {due} AND id <> :id AND (priority > :p OR (priority = :p AND"
            " (expected_start_time < :t OR (expected_start_time = :t AND (created < :c"
            " OR (created = :c AND id < :id))))))"
        )
        return self._run_place(params, ahead_of, due)

    def _run_place(self, params: dict[str, Any], ahead_of: str, waiting: str) -> QueuePlace:
        with self.db.read() as tx:
            count = tx.one(f"SELECT COUNT(*) {ahead_of}", params)
            rows = tx.execute(
                f"SELECT id, priority, created, pid, host {ahead_of}"
                f" ORDER BY priority DESC, expected_start_time, created, id LIMIT {MAX_LISTED}",
                params,
            )
            total = tx.one(f"SELECT COUNT(*) FROM flow_runs WHERE {waiting}", params)
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
            rows = tx.execute(
                f"SELECT id, name FROM flow_runs WHERE id IN ({marks})"
                f" UNION ALL SELECT id, name FROM task_runs WHERE id IN ({marks})",
                params,
            )
        return {r[0]: r[1] for r in rows}

    def deployment_usage(self, full_name: str, tags: Sequence[str]) -> DeploymentUsage:
        """Runs of a deployment now, and the tags and limits its recent runs used."""
        now = self.clock.now()
        with self.db.read() as tx:
            counts = tx.one(
                "SELECT COALESCE(SUM(CASE WHEN state_type IN ('PENDING', 'RUNNING',"
                " 'CANCELLING', 'PAUSED') THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN"
                " state_type = 'SCHEDULED' AND state_name = 'AwaitingConcurrencySlot' THEN 1"
                " ELSE 0 END), 0), COALESCE(SUM(CASE WHEN state_type = 'SCHEDULED' AND"
                " expected_start_time <= :now THEN 1 ELSE 0 END), 0) FROM flow_runs"
                " WHERE deployment = :d",
                {"d": full_name, "now": now},
            )
            recent = [
                r[0]
                for r in tx.execute(
                    "SELECT id FROM flow_runs WHERE deployment = :d ORDER BY created DESC LIMIT 20",
                    {"d": full_name},
                )
            ]
            found_tags = set(tags)
            run_ids = list(recent)
            if recent:
                params = {f"r{n}": v for n, v in enumerate(recent)}
                marks = ", ".join(f":r{n}" for n in range(len(recent)))
                for task_id, raw in tx.execute(
                    f"SELECT id, tags FROM task_runs WHERE flow_run_id IN ({marks}) LIMIT 2000",
                    params,
                ):
                    run_ids.append(task_id)
                    found_tags.update(json.loads(raw or "[]"))
            used: set[str] = set()
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start : start + 500]
                params = {f"r{n}": v for n, v in enumerate(chunk)}
                marks = ", ".join(f":r{n}" for n in range(len(chunk)))
                used.update(
                    r[0]
                    for r in tx.execute(
                        "SELECT DISTINCT limit_name FROM events WHERE kind = 'slot.granted'"
                        f" AND run_id IN ({marks})",
                        params,
                    )
                    if r[0]
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
            runs = tx.execute(
                "SELECT id, name, blocked_on, state_timestamp, state_message FROM flow_runs"
                " WHERE state_type = 'SCHEDULED' AND state_name = 'AwaitingConcurrencySlot'"
                " ORDER BY state_timestamp LIMIT :n",
                {"n": limit},
            )
            waiters = tx.execute(
                "SELECT holder_kind, holder_id, limit_name, created, slots, priority FROM waiters"
                " WHERE expires > :now ORDER BY created LIMIT :n",
                {"now": now, "n": limit},
            )
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
