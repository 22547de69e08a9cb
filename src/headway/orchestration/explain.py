"""The Orchestrator's answers: why a run waits, how a deployment is limited, the status screen.

Mixed into :class:`headway.orchestrator.Orchestrator`. Each answer is built
from one read snapshot of the store (leases, waiters, limits, runs, events;
``store/explain.py``), never from a guess: a run waits on a limit when it has
a waiter row there, or when it is a deployment run whose ``blocked_on`` names
it, or when it is due and its pool or queue is full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from headway.core.deployments import (
    DEFAULT_QUEUE,
    deployment_limit_name,
    pool_limit_name,
    queue_limit_name,
)
from headway.core.events import MAX_EVENTS, Event, EventPage, LimitStats
from headway.core.limits import TAG_PREFIX, UTILIZATION_WINDOW_SECONDS
from headway.core.models import Deployment, FlowRun, Lease, TaskRun
from headway.core.states import TERMINAL, State, StateType
from headway.core.views import LimitView, QueuePlace, RunClaim, WaitRequest
from headway.exceptions import ObjectNotFound, ValidationError
from headway.explain import (
    AheadInfo,
    Blocker,
    DeploymentExplanation,
    HeldSlots,
    PolicyLayer,
    RunExplanation,
    StatusReport,
    WaitingEntry,
    estimate_start,
)
from headway.orchestration.explain_phrases import (
    CLOSED,
    awaited,
    deployment_applies,
    dt,
    fmt_seconds,
    holder,
    occupancy,
    on_collision,
    past_waits,
    scope,
)

if TYPE_CHECKING:
    from headway.core.models import Worker
    from headway.settings import Settings
    from headway.store.store import Store

#: What a request that finds a global or tag limit full does.
WAIT_FIFO = "WAIT (FIFO within priority)"
#: Workers heard from within this long show on the status screen.
RECENT_WORKER_SECONDS = 600.0


class ExplainPolicy:
    """``explain_run``, ``explain_deployment``, ``read_events``, ``status``, ``limit_stats``."""

    store: Store
    settings: Settings

    if TYPE_CHECKING:

        def read_deployment(self, name: str) -> Deployment: ...
        def list_workers(self, pool: str | None = None) -> list[Worker]: ...

    # -- events and counters ---------------------------------------------------------
    def read_events(
        self,
        *,
        run_id: str | None = None,
        limit_name: str | None = None,
        since: datetime | None = None,
        kind: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Recorded events in time order (the newest ``limit``, or those after a cursor)."""
        if since is not None and not isinstance(since, datetime):
            raise ValidationError(f"since must be a datetime, got {since!r}")
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return self.store.events.read_events(
            run_id=run_id,
            limit_name=limit_name,
            since=None if since is None else since.timestamp(),
            kind=kind,
            after=after,
            limit=limit,
        )

    def limit_stats(self, *, prefix: str | None = None) -> list[LimitStats]:
        """Limits with their counters: grants, denials, expiries, average hold and occupancy,
        and the share of each held while anyone waited over the last minute."""
        stats = self.store.events.limit_stats(prefix=prefix)
        if not stats:
            return stats
        used = self.store.events.utilization(
            None if prefix is None else [s.name for s in stats], UTILIZATION_WINDOW_SECONDS
        )
        return [
            replace(s, utilization_while_waiting=used[s.name].share if s.name in used else None)
            for s in stats
        ]

    def prune_events(self) -> int:
        """Delete events older than the retention (``HEADWAY_EVENTS_RETENTION_SECONDS``)."""
        return self.store.events.prune_events(self.settings.events_retention_seconds)

    # -- why is this run waiting? ----------------------------------------------------
    def explain_run(self, run_id: str) -> RunExplanation:
        """Why a flow or task run waits (or did, or does not): every limit in its way."""
        if not isinstance(run_id, str) or not run_id.strip() or len(run_id) > 100:
            raise ValidationError(f"invalid run id {run_id!r}")
        store = self.store
        store.events.flush_events()
        now = self.store.clock.now()
        with store.db.read():  # one snapshot for the whole answer
            flow: FlowRun | None = None
            task: TaskRun | None = None
            try:
                flow = store.runs.read_flow_run(run_id)
            except ObjectNotFound:
                try:
                    task = store.runs.read_task_run(run_id)
                except ObjectNotFound:
                    task = None
            claim = store.explain.run_claim(run_id) if flow is not None else None
            waits = store.explain.waits_of(run_id)
            holds = store.explain.leases_of(run_id)
            if flow is None and task is None and not waits and not holds:
                raise ObjectNotFound(f"no flow run or task run with id {run_id}")
            blockers = [self._waiter_blocker(w, now) for w in waits]
            deployment = None
            if flow is not None and flow.deployment is not None:
                try:
                    deployment = self.read_deployment(flow.deployment)
                except (ObjectNotFound, ValidationError):
                    deployment = None
            if claim is not None and claim.state_type == StateType.SCHEDULED.value:
                blockers += self._claim_blockers(claim, deployment, now)
            events = store.events.read_events(run_id=run_id, limit=500, flush=False).events
            states = store.runs.read_states(run_id)
            applies = self._applicable_limits(flow, task, deployment)
            task_waits = store.explain.task_waits(run_id) if flow is not None else []
        answer = self._answer(
            run_id, flow, task, claim, blockers, holds, events, states, applies, now
        )
        if not task_waits:
            return answer
        # The flow run goes on, but some of its tasks wait: say which, and on what.
        names = sorted({f"{name!r}" for _, name, _ in task_waits})
        lines = tuple(
            f"task run {name!r} ({task_id}) waits for {limit!r}: headway why {task_id}"
            for task_id, name, limit in task_waits
        )
        return replace(
            answer,
            summary=f"{answer.summary}; task run(s) {', '.join(names)} wait for a slot",
            details=lines + answer.details,
        )

    def _waiter_blocker(self, wait: WaitRequest, now: float) -> Blocker:
        name = wait.limit_name
        view = self.store.explain.limit_view(name)
        place = self.store.explain.waiter_place(name, wait.priority, wait.seq)
        return self._blocker(
            name, view, place, wait.slots, wait.priority, wait.since, WAIT_FIFO, now
        )

    def _claim_blockers(
        self, claim: RunClaim, deployment: Deployment | None, now: float
    ) -> list[Blocker]:
        """The limits a scheduled deployment run's claim found full."""
        since = dt(claim.expected_start or claim.created)
        if claim.blocked_on is not None:
            strategy = deployment.collision_strategy if deployment is not None else "ENQUEUE"
            view = self.store.explain.limit_view(claim.blocked_on)
            if view is not None and view.stats.active and view.stats.limit == 0:
                strategy = f"WAIT (the limit {CLOSED}; then {strategy})"
            place = self.store.explain.blocked_place(claim.blocked_on, claim)
            return [
                self._blocker(
                    claim.blocked_on, view, place, 1, claim.priority, since, strategy, now
                )
            ]
        # A due run of a full pool or queue waits on it, whether or not a claim has
        # marked it AwaitingConcurrencySlot: a claim marks only the run it tried, and
        # stops at a pool it finds full before looking at any run.
        if claim.work_pool is None or (claim.expected_start or claim.created) > now:
            return []
        out: list[Blocker] = []
        queue = claim.work_queue or DEFAULT_QUEUE
        for name, scope_queue in (
            (pool_limit_name(claim.work_pool), None),
            (queue_limit_name(claim.work_pool, queue), queue),
        ):
            view = self.store.explain.limit_view(name)
            if view is None or not view.stats.active:
                continue
            if view.stats.active_slots + 1 <= view.stats.limit:
                continue  # room now: the next claim takes the run
            place = self.store.explain.pool_place(claim.work_pool, scope_queue, claim)
            strategy = "WAIT (the run stays scheduled; claimed by priority, then scheduled time)"
            out.append(self._blocker(name, view, place, 1, claim.priority, since, strategy, now))
        return out

    def _blocker(
        self,
        name: str,
        view: LimitView | None,
        place: QueuePlace,
        slots: int,
        priority: int,
        since: datetime | None,
        strategy: str,
        now: float,
    ) -> Blocker:
        ids = [h.holder.id for h in view.holders if h.holder.id] if view else []
        ids += [a.holder_id for a in place.ahead if a.holder_id]
        names = self.store.explain.run_names(ids)
        holders = tuple(holder(h, names) for h in view.holders) if view else ()
        ahead = tuple(
            AheadInfo(a.position, a.holder_kind, a.holder_id, names.get(a.holder_id or ""),
                      a.slots, a.priority, a.since)
            for a in place.ahead
        )  # fmt: skip
        if view is None:
            return Blocker(
                name, scope(name), 0, 0.0, 0.0, False, (), 0, place.position,
                place.position - 1, ahead, place.waiting, slots, priority, since, strategy,
                None, 0.0, None, "the limit no longer exists: the request is granted next",
            )  # fmt: skip
        stats = view.stats
        seconds, note = estimate_start(
            now=now,
            limit=stats.limit,
            active_slots=stats.active_slots,
            decay_per_second=stats.slot_decay_per_second,
            holders=[(h.created.timestamp(), h.slots[name]) for h in view.holders],
            ahead=[a.slots for a in place.ahead],
            slots_ahead=place.slots_ahead,
            occupy=slots,
            average_hold=stats.average_hold_seconds,
        )
        return Blocker(
            limit_name=name,
            scope=stats.scope,
            limit=stats.limit,
            active_slots=stats.active_slots,
            slot_decay_per_second=stats.slot_decay_per_second,
            active=stats.active,
            holders=holders,
            holder_count=stats.holders,
            position=place.position,
            waiters_ahead=place.position - 1,
            ahead=ahead,
            waiting=place.waiting,
            slots=slots,
            priority=priority,
            waiting_since=since,
            strategy=strategy,
            average_hold_seconds=stats.average_hold_seconds,
            average_occupancy=stats.average_occupancy,
            estimated_start=None if seconds is None else dt(now + seconds),
            estimate=note,
        )

    def _applicable_limits(
        self, flow: FlowRun | None, task: TaskRun | None, deployment: Deployment | None
    ) -> list[tuple[str, bool]]:
        """Every limit that could apply to the run: a line each, and whether it is set."""
        run = flow or task
        if run is None:
            return []
        limits = {s.name: s for s in self.store.events.limit_stats()}
        out: list[tuple[str, bool]] = []

        def check(label: str, name: str) -> None:
            stat = limits.get(name)
            if stat is None:
                out.append((f"{label}: no limit configured ({name})", False))
            elif not stat.active:
                out.append((f"{label}: limit {name} is inactive", False))
            else:
                out.append((f"{label}: limit {name} = {stat.limit}", True))

        for tag in run.tags:
            check(f"tag {tag!r}", TAG_PREFIX + tag)
        if flow is not None and flow.deployment is not None:
            row = limits.get(deployment_limit_name(flow.deployment))
            out.append(deployment_applies(flow.deployment, deployment, row))
            if flow.work_pool is not None:
                queue = flow.work_queue or DEFAULT_QUEUE
                check(f"work pool {flow.work_pool!r}", pool_limit_name(flow.work_pool))
                check(f"work queue {queue!r}", queue_limit_name(flow.work_pool, queue))
        return out

    def _answer(
        self,
        run_id: str,
        flow: FlowRun | None,
        task: TaskRun | None,
        claim: RunClaim | None,
        blockers: list[Blocker],
        holds: Sequence[Lease],
        events: Sequence[Event],
        states: Sequence[State],
        applies: Sequence[tuple[str, bool]],
        now: float,
    ) -> RunExplanation:
        kind = "flow_run" if flow else "task_run" if task else "holder"
        run = flow or task
        state = run.state if run is not None else None
        name = run.name if run is not None else None
        label = f"{kind.replace('_', ' ')} {name or run_id}"
        held = tuple(
            HeldSlots(n, s, h.created, h.id) for h in holds for n, s in sorted(h.slots.items())
        )
        waited, total = past_waits(events, states)
        details: list[str] = []
        finished = state is not None and state.type in TERMINAL
        estimate = None
        if blockers:
            starts = [b.estimated_start for b in blockers]
            if all(s is not None for s in starts):
                estimate = max(s for s in starts if s is not None)
            names = ", ".join(repr(b.limit_name) for b in blockers)
            summary = f"{label} is waiting for {len(blockers)} limit(s): {names}"
            summary += "".join(f"; limit {b.limit_name!r} {CLOSED}" for b in blockers if b.closed)
            if estimate is not None:
                summary += (
                    f"; estimated start in {fmt_seconds(max(0.0, estimate.timestamp() - now))}"
                )
        elif finished:
            assert state is not None
            summary = f"{label} ended {state.type.value}"
            if waited:
                summary += f"; it waited {fmt_seconds(total or 0.0)} in all before it ran"
            else:
                summary += "; it never waited for a slot"
        elif state is not None and state.type is StateType.SCHEDULED and claim is not None:
            due = claim.expected_start or claim.created
            if due > now:
                summary = f"{label} is scheduled for {dt(due).isoformat()}; no limit in its way"
            elif claim.deployment is not None:
                where = f"work pool {claim.work_pool!r}" if claim.work_pool else "serve()"
                summary = (
                    f"{label} is due since {fmt_seconds(now - due)} and waits for a worker of"
                    f" {where} to claim it; no limit in its way"
                )
            else:
                summary = f"{label} is scheduled; no limit in its way"
        elif held:
            summary = f"{label} is {state.type.value if state else 'holding slots'}; it holds " + (
                ", ".join(f"{h.slots} slot(s) of {h.limit_name!r}" for h in held)
            )
        elif state is not None:
            summary = f"{label} is {state.type.value} and waits for no limit"
        else:
            summary = f"{label} waits for no limit"
        limited = bool(blockers or held or waited) or any(set_ for _, set_ in applies)
        if not limited:
            summary += (
                "; it is not limited: no concurrency limit is configured for it (the default"
                " is unlimited)"
            )
        details.extend(line for line, _ in applies)
        return RunExplanation(
            run_id=run_id,
            kind=kind,
            name=name,
            state=state,
            deployment=flow.deployment if flow is not None else None,
            waiting=bool(blockers),
            limited=limited,
            summary=summary,
            details=tuple(details),
            blockers=tuple(blockers),
            holds=held,
            estimated_start=estimate,
            waited=waited,
            total_wait_seconds=total,
        )

    # -- a deployment's policy -------------------------------------------------------
    def explain_deployment(self, name: str) -> DeploymentExplanation:
        """A deployment's effective concurrency policy, layer by layer."""
        dep = self.read_deployment(name)
        with self.store.db.read():
            stats = {s.name: s for s in self.store.events.limit_stats()}
            usage = self.store.explain.deployment_usage(dep.full_name, dep.tags)
            pool_paused = queue_paused = False
            if dep.work_pool is not None:
                try:
                    pool = self.store.pools.read_work_pool(dep.work_pool)
                except ObjectNotFound:
                    pool = None
                pool_paused = bool(pool and pool.paused)
                queue_name = dep.work_queue or DEFAULT_QUEUE
                queue_paused = bool(
                    pool and any(q.paused for q in pool.queues if q.name == queue_name)
                )
        layers: list[PolicyLayer] = []

        def layer(kind: str, label: str, limit_name: str, detail: str) -> PolicyLayer:
            stat = stats.get(limit_name)
            if stat is None or not stat.active:
                return PolicyLayer(kind, label, limit_name, None, None, None, detail + "unlimited")
            taken = f"limit {CLOSED}" if stat.limit == 0 else f"{occupancy(stat)} slots taken"
            return PolicyLayer(
                kind, label, limit_name, stat.limit, stat.active_slots, stat.waiters, detail + taken
            )  # fmt: skip

        if dep.work_pool is not None:
            queue_name = dep.work_queue or DEFAULT_QUEUE
            pool_limit = pool_limit_name(dep.work_pool)
            queue_limit = queue_limit_name(dep.work_pool, queue_name)
            pool_note = "paused; " if pool_paused else ""
            queue_note = "paused; " if queue_paused else ""
            layers.append(layer("work pool", dep.work_pool, pool_limit, pool_note))
            layers.append(
                layer("work queue", f"{dep.work_pool}/{queue_name}", queue_limit, queue_note)
            )
        else:
            layers.append(
                PolicyLayer("work pool", None, None, None, detail="none: served by serve()")
            )
        layers.append(self._deployment_layer(dep, stats))
        for tag in usage.task_tags:
            layers.append(layer("tag", tag, TAG_PREFIX + tag, "tag of its runs or tasks; "))
        for used in usage.limits_used:
            if scope(used) == "global":
                layers.append(layer("global", used, used, "taken in code by recent runs; "))
        notes = [
            "global limits taken in code (concurrency(), rate_limit()) are known only when the"
            " code runs: those listed were used by its recent runs"
            + ("" if usage.recent_runs else " (it has no runs yet)"),
        ]
        if dep.paused:
            notes.append("the deployment is paused: its schedules create no runs")
        return DeploymentExplanation(
            deployment=dep.full_name,
            layers=tuple(layers),
            collision_strategy=dep.collision_strategy,
            concurrency_key=dep.concurrency_key,
            on_collision=on_collision(dep),
            active_runs=usage.active,
            waiting_runs=usage.waiting,
            notes=tuple(notes),
        )

    def _deployment_layer(self, dep: Deployment, stats: dict[str, LimitStats]) -> PolicyLayer:
        if dep.concurrency_limit is None:
            return PolicyLayer(
                "deployment", dep.full_name, None, None,
                detail="no concurrency limit: runs overlap (the default)",
            )  # fmt: skip
        if dep.concurrency_key:
            prefix = deployment_limit_name(dep.full_name) + ":"
            keyed = [s for n, s in stats.items() if n.startswith(prefix)]
            taken = sum(s.active_slots for s in keyed)
            return PolicyLayer(
                "deployment", dep.full_name, prefix + "<key>", dep.concurrency_limit, taken,
                sum(s.waiters for s in keyed),
                f"{dep.concurrency_limit} per value of key {dep.concurrency_key!r}"
                f" ({len(keyed)} key value(s) seen); strategy {dep.collision_strategy}",
            )  # fmt: skip
        name = deployment_limit_name(dep.full_name)
        stat = stats.get(name)
        # The slot engine's limit is what applies (set to 0 by hand: a kill switch).
        value = stat.limit if stat is not None and stat.active else dep.concurrency_limit
        return PolicyLayer(
            "deployment", dep.full_name, name, value, stat.active_slots if stat else 0.0, None,
            f"strategy {dep.collision_strategy}" + (f"; limit {CLOSED}" if value == 0 else ""),
        )  # fmt: skip

    # -- the status screen -----------------------------------------------------------
    def status(self, *, limits: int = 10, waiting: int = 20) -> StatusReport:
        """Runs by state, the busiest limits, runs waiting now, workers seen recently."""
        self.store.events.flush_events()
        with self.store.db.read():
            by_state = self.store.runs.count_flow_runs_by_state()
            stats = self.store.events.limit_stats()
            waits = self.store.explain.waiting_runs(limit=waiting)
            workers = self.list_workers()
        cut = datetime.now(UTC) - timedelta(seconds=RECENT_WORKER_SECONDS)
        busiest = sorted(
            stats,
            key=lambda s: (s.waiters, s.active_slots / max(s.limit, 1), s.grants),
            reverse=True,
        )[:limits]
        return StatusReport(
            generated=datetime.now(UTC),
            runs_by_state=dict(sorted(by_state.items())),
            limits=tuple(busiest),
            waiting=tuple(
                WaitingEntry(
                    w.run_id, w.kind, w.name, w.limit_name or awaited(w.detail), w.since, w.detail
                )
                for w in waits
            ),
            workers=tuple(
                w for w in workers if w.last_heartbeat is not None and w.last_heartbeat >= cut
            ),
        )


__all__ = ["MAX_EVENTS", "RECENT_WORKER_SECONDS", "WAIT_FIFO", "ExplainPolicy"]
