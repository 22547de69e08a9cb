"""Policy over a Store: which state changes are allowed, which limits a run needs.

The state machine itself lives in ``core.states``; the Store enforces it inside
each transaction. The Orchestrator adds what needs more than one record:
recording, slot acquisition for task tags, claiming and collision strategies
for deployments.

It implements the :class:`~headway.api.operations.Client` protocol (mypy checks
it where :mod:`headway.client.factory` hands one out as a Client): the embedded
client is the Orchestrator over the embedded store, and the server calls the
same methods for each route.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from headway.core.events import CLAIM_LATENCY, SLOT_WAIT, Histogram
from headway.core.models import FlowRun, LogLine, LogRecord, TaskRun, TaskRunRecord
from headway.core.states import State, StateType
from headway.orchestration.deployments import DeploymentPolicy
from headway.orchestration.explain import ExplainPolicy
from headway.settings import Settings
from headway.slot_policy import SlotPolicy
from headway.store.db import WouldWait
from headway.store.store import Store

T = TypeVar("T")


class Orchestrator(SlotPolicy, DeploymentPolicy, ExplainPolicy):
    """The one implementation of headway's operations: the embedded Client, and the server's."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def stop_retrying(self) -> None:
        """Nothing to stop: an embedded call has no retry window (the Client hook)."""

    def attempt_here(self, call: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``call`` now if its first write needs no lock another writer holds (the Client hook).

        SQLite only: a slot call is then one short transaction, done on the
        caller's thread (an event loop's) rather than a worker thread's.
        """
        try:
            with self.store.db.without_waiting():
                return True, call()
        except WouldWait:
            return False, None

    def close(self) -> None:
        """Stop this process's wake-up receiver and close the store (the Client hook)."""
        self.close_wakeups()
        self.store.close()

    # -- runs ----------------------------------------------------------------------
    def create_flow_run(
        self,
        *,
        id: str,
        name: str,
        flow_name: str,
        state: State,
        parameters: dict[str, object] | None = None,
        deployment: str | None = None,
        parent_task_run_id: str | None = None,
        tags: Sequence[str] = (),
        pid: int | None = None,
        host: str | None = None,
    ) -> FlowRun:
        """Record a new flow run in its first state."""
        return self.store.runs.create_flow_run(
            id=id,
            name=name,
            flow_name=flow_name,
            state=state,
            parameters=parameters,
            deployment=deployment,
            parent_task_run_id=parent_task_run_id,
            tags=tags,
            pid=pid,
            host=host,
        )

    def set_flow_run_state(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> FlowRun:
        """Move a flow run to a new state (IllegalTransition if not allowed).

        A final state also gives back the slots a worker's claim took for the run
        and wakes the workers waiting for them.
        """
        return self._set_run_state(run_id, state, expect)

    def read_flow_run(self, run_id: str, *, with_task_runs: bool = False) -> FlowRun:
        """One flow run."""
        return self.store.runs.read_flow_run(run_id, with_task_runs=with_task_runs)

    def list_flow_runs(
        self,
        *,
        limit: int = 20,
        states: Sequence[StateType] | None = None,
        deployment: str | None = None,
        flow_name: str | None = None,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs, newest first."""
        return self.store.runs.list_flow_runs(
            limit=limit, states=states, deployment=deployment, flow_name=flow_name, offset=offset
        )

    def record_task_runs(self, records: Sequence[TaskRunRecord]) -> None:
        """Record task runs and their states (none out of a final state).

        A task run that ended while waiting for slots leaves the queue: its
        waiting call is woken and refused, and whoever it blocked is woken.
        """
        self._notify(self.store.runs.record_task_runs(records))

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run."""
        return self.store.runs.read_task_run(task_run_id)

    def read_task_runs(self, flow_run_id: str) -> list[TaskRun]:
        """The task runs of a flow run."""
        return self.store.runs.read_task_runs(flow_run_id)

    def read_states(self, run_id: str) -> list[State]:
        """The state history of a run."""
        return self.store.runs.read_states(run_id)

    def write_logs(self, records: Sequence[LogRecord]) -> None:
        """Append log lines."""
        self.store.runs.write_logs(records)

    def read_logs(self, flow_run_id: str, *, after_id: int = 0) -> list[LogLine]:
        """Log lines of a flow run after ``after_id``."""
        return [LogLine(i, r) for i, r in self.store.runs.read_logs(flow_run_id, after_id=after_id)]

    # -- metrics (served by the server's /metrics, not a Client operation) -----------
    def count_flow_runs_by_state(self) -> dict[str, int]:
        """How many flow runs are in each state type (by its value), now."""
        return self.store.runs.count_flow_runs_by_state()

    def slot_wait_histograms(self) -> list[Histogram]:
        """Per limit: how long the requests that queued waited before their grant."""
        return self.store.events.read_histograms(SLOT_WAIT)

    def claim_latency_histograms(self) -> list[Histogram]:
        """Per work pool: from a deployment run's scheduled time to its claim."""
        return self.store.events.read_histograms(CLAIM_LATENCY)
