"""Store operations on claimed runs: their leases, how they end, who to wake.

A claimed run holds a slot lease (the pool, queue and deployment slots its
claim took) and a run lease (``lease_expires``) that its worker renews with
every heartbeat. A run that ends (any final state, through whichever client)
gives its slots back in the same transaction, and the workers of its pool are
woken (their wake addresses are on their ``workers`` rows). A run whose lease
expired (its worker died) ends CRASHED, or CANCELLED if it was being
cancelled, swept by claims, heartbeats and the server. Cancelling a run that
runs marks it CANCELLING and wakes its worker, which stops it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from headway._backoff import Backoff
from headway.core.clock import Clock
from headway.core.limits import WakeTarget
from headway.core.models import FlowRun, HeartbeatResult
from headway.core.states import Cancelled, Cancelling, Crashed, State, StateType
from headway.exceptions import ConflictError, ObjectNotFound
from headway.store.db import Database, Tx
from headway.store.dialects import fails_whole_pass, is_transient_conflict
from headway.store.events import Events
from headway.store.queries import runs as q
from headway.store.run_rows import flow_run_of
from headway.store.runs import Runs
from headway.store.slots import Slots
from headway.store.sql import in_list

T = TypeVar("T")
#: Pauses before a transaction the database aborted (a deadlock) is run again:
#: short, and mostly random, so the two that deadlocked do not meet again.
CONFLICT_BACKOFF = Backoff(first=0.02, cap=1.0, jitter=0.75)
#: Workers heard from within this long are woken when their pool has work.
_CLAIMER_TTL = 600.0
#: Most expired runs one sweep ends.
_SWEEP_BATCH = 200


def retrying(operation: Callable[[], T], attempts: int = 6) -> T:
    """Run a one-transaction operation again when PostgreSQL aborted it (deadlock).

    A claim locks its pool, then runs, then limits; a run ending locks the run,
    then limits: two such transactions can each wait on the other, and the
    database ends one of them. Nothing was written; running it again succeeds.
    """
    retry = CONFLICT_BACKOFF.start(attempts=attempts)
    while True:
        try:
            return operation()
        except Exception as exc:
            if not is_transient_conflict(exc) or not retry.pause():
                raise


class RunLeases:
    """Claimed runs' leases, how they end, cancellation, and who to wake for them."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        events: Events,
        runs: Runs,
        slots: Slots,
    ) -> None:
        self.db = db
        self.clock = clock
        self.events = events
        self.runs = runs
        self.slots = slots

        #: Runs a sweep could not end: skipped by later sweeps of this store.
        self._runs_skipped: set[str] = set()

    def claimers(self, tx: Tx, pool: str | None, now: float) -> list[WakeTarget]:
        """The workers to wake when ``pool`` (None: ``serve()`` processes) may have work."""
        rows = tx.execute(q.SELECT_POOL_CLAIMERS, {"pool": pool or "", "cut": now - _CLAIMER_TTL})
        return [WakeTarget(f"claim:{r[0]}", r[1], r[2], int(r[3] or 0)) for r in rows]

    def pool_claimers(self, pool: str | None) -> list[WakeTarget]:
        """The workers to wake when ``pool`` may have work (one read)."""
        with self.db.read() as tx:
            return self.claimers(tx, pool, self.clock.now())

    def worker_targets(self, tx: Tx, worker_ids: Sequence[str]) -> list[WakeTarget]:
        """The workers to tell that one of their runs is being cancelled."""
        ids = sorted({w for w in worker_ids if w})
        if not ids:
            return []
        params: dict[str, Any] = {}
        marks = in_list("w", ids, params)
        rows = tx.execute(q.select_worker_wake_addresses(marks), params)
        return [WakeTarget(f"worker:{r[0]}", r[1], r[2], int(r[3] or 0)) for r in rows]

    def finish_run(
        self, tx: Tx, run_id: str, state: State, expect: frozenset[StateType] | None
    ) -> list[WakeTarget]:
        """Change a run's state inside ``tx``; a final state gives its slots back.

        So does PENDING -> SCHEDULED: a claimed run handed back before it started
        (its worker is stopping) waits to be claimed again. RUNNING -> SCHEDULED
        (AwaitingRetry) keeps everything: the run retries in its own process.
        """
        unclaim = False
        if state.type is StateType.SCHEDULED:
            before = tx.one(q.SELECT_FLOW_RUN_LEASE_STATE + tx.dialect.for_update, {"id": run_id})
            unclaim = (
                before is not None
                and before[0] == StateType.PENDING.value
                and before[1] is not None
            )
        withdrawn = self.runs.set_state_in(tx, run_id, state, expect)
        if state.type is StateType.SCHEDULED and not unclaim:
            return withdrawn
        row = tx.one(q.SELECT_FLOW_RUN_CLAIM, {"id": run_id})
        if row is None or (row[0] is None and row[2] is None and not row[3]):
            return withdrawn  # a run of no deployment: nothing was held
        lease_id, pool, deployment, blocked_on, lease_expires = row
        wake: list[WakeTarget] = withdrawn
        if state.is_final or unclaim:
            tx.execute(
                q.UNCLAIM_FLOW_RUN if unclaim else q.CLEAR_FLOW_RUN_LEASE,
                {"id": run_id, "now": self.clock.now()},
            )
            if lease_id is not None:
                _, released = self.slots.release_slots(lease_id)
                wake.extend(released)
            if deployment is not None and (lease_id is not None or lease_expires is not None):
                wake.extend(self.claimers(tx, pool, self.clock.now()))
        elif blocked_on:
            tx.execute(q.CLEAR_FLOW_RUN_BLOCKED_ON, {"id": run_id, "now": self.clock.now()})
        return wake

    def set_flow_run_state_releasing(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> tuple[FlowRun, list[WakeTarget]]:
        """Move a flow run to ``state``; a final state releases what its claim took."""
        with self.db.write() as tx:
            wake = self.finish_run(tx, run_id, state, expect)
            row = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": run_id})
        assert row is not None
        return flow_run_of(row), wake

    def expired_runs(self, tx: Tx, now: float) -> list[str]:
        """The oldest runs whose lease expired, but those a sweep had to skip."""
        skipped: set[str] = self._runs_skipped
        rows = tx.execute(
            q.SELECT_EXPIRED_FLOW_RUNS, {"now": now, "n": _SWEEP_BATCH + len(skipped)}
        )
        return [r[0] for r in rows if r[0] not in skipped][:_SWEEP_BATCH]

    def crash_expired(
        self, tx: Tx, run_ids: Sequence[str], now: float
    ) -> tuple[int, list[WakeTarget]]:
        """End those of ``run_ids`` whose lease expired; how many, and who to wake."""
        if not run_ids:
            return 0, []
        params: dict[str, Any] = {"now": now}
        # Looked at again inside the write: a renewal may have come in meanwhile.
        rows = tx.execute(q.select_expired_among(in_list("r", run_ids, params)), params)
        wake: list[WakeTarget] = []
        ended = 0
        for run_id, state_type in rows:
            if state_type == StateType.CANCELLING.value:
                state = Cancelled(message="cancelled; its worker stopped renewing the run's lease")
            else:
                state = Crashed(
                    message="its worker stopped renewing the run's lease (worker died or lost"
                    " the store)"
                )
            try:
                wake.extend(self.finish_run(tx, run_id, state, None))
                ended += 1
            except ConflictError:
                tx.execute(q.DROP_FLOW_RUN_LEASE, {"id": run_id, "now": now})
            self.events.event(
                tx, now, "flow_run.lease_expired", "", None, state.type.value, run_id=run_id
            )
        return ended, wake

    def sweep_runs(self, *, now: float | None = None) -> tuple[int, list[WakeTarget]]:
        """End the runs whose lease expired (CRASHED, or CANCELLED if being cancelled).

        Up to a batch of the oldest, in one transaction. If that fails for a
        reason other than the store itself (a damaged run), each run is ended
        in its own transaction instead; one that still fails is skipped for
        the life of this store (logged, recorded as ``sweep.skipped``), so it
        neither stops the others nor holds the head of the queue.
        """
        now = self.clock.now() if now is None else now
        with self.db.read() as tx:
            due = self.expired_runs(tx, now)
        if not due:
            return 0, []
        try:
            with self.db.write() as tx:
                return self.crash_expired(tx, due, now)
        except Exception as exc:
            if fails_whole_pass(exc):
                raise
        # Something in the batch failed: each run on its own, to find which.
        ended, wake = 0, []
        for run_id in due:
            try:
                with self.db.write() as tx:
                    count, targets = self.crash_expired(tx, [run_id], now)
            except Exception as exc:
                if fails_whole_pass(exc):
                    raise
                self._runs_skipped.add(run_id)
                self.events.report_skipped("run", run_id, exc)
                continue
            ended += count
            wake.extend(targets)
        return ended, wake

    def heartbeat_worker(
        self, worker_id: str, run_ids: Sequence[str], lease_seconds: float
    ) -> HeartbeatResult:
        """Renew a worker and the leases of its runs; say which it lost and which to cancel."""
        now = self.clock.now()
        with self.db.write() as tx:
            tx.execute(q.UPDATE_WORKER_HEARTBEAT, {"now": now, "id": worker_id})
            keep: dict[str, str] = {}
            leases: list[str] = []
            ids = list(dict.fromkeys(run_ids))
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                params: dict[str, Any] = {"w": worker_id}
                marks = in_list("r", chunk, params)
                for run_id, state_type, lease_id in tx.execute(
                    q.select_leased_runs_of_worker(marks), params
                ):
                    keep[run_id] = state_type
                    if lease_id is not None:
                        leases.append(lease_id)
            kept = list(keep)
            for start in range(0, len(kept), 500):
                chunk = kept[start : start + 500]
                params = {"e": now + lease_seconds}
                marks = in_list("r", chunk, params)
                tx.execute(q.renew_run_leases(marks), params)
            if leases:
                self.slots.renew_leases(leases, lease_seconds)
        return HeartbeatResult(
            lost=tuple(r for r in ids if r not in keep),
            cancelling=tuple(r for r, s in keep.items() if s == StateType.CANCELLING.value),
        )

    def cancel_flow_run(self, run_id: str, message: str) -> tuple[FlowRun, list[WakeTarget]]:
        """Cancel a run: at once if nothing runs it, else CANCELLING for its worker to stop."""
        with self.db.write() as tx:
            row = tx.one(q.SELECT_FLOW_RUN_WORKER + tx.dialect.for_update, {"id": run_id})
            if row is None:
                raise ObjectNotFound(f"no flow run with id {run_id}")
            current = StateType(row[0])
            wake: list[WakeTarget] = []
            if current in (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED,
                           StateType.CANCELLED):  # fmt: skip
                raise ConflictError(f"flow run {run_id} already ended {current.value}")
            if current is StateType.CANCELLING:
                wake = self.worker_targets(tx, [row[1]])
            elif current is StateType.SCHEDULED or (
                current in (StateType.PENDING, StateType.PAUSED) and row[1] is None
            ):
                wake = self.finish_run(tx, run_id, Cancelled(message=message), None)
            else:
                wake = self.runs.set_state_in(tx, run_id, Cancelling(message=message), None)
                wake += self.worker_targets(tx, [row[1]])
            out = tx.one(q.SELECT_FLOW_RUN_BY_ID, {"id": run_id})
        assert out is not None
        return flow_run_of(out), wake


__all__ = ["CONFLICT_BACKOFF", "RunLeases", "retrying"]
