"""A task run held in memory while it runs, and the final state that carries a result.

Task-run states are tracked here, checked against the one state machine
(``core.states.check_transition``), and handed to the recorder, which writes
them in batches. A tracker's states only grow; the recorder remembers how many
it has already written.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from headway.core.models import TaskRunRecord
from headway.core.states import ALLOWED as _ALLOWED
from headway.core.states import State, StateType, check_transition
from headway.exceptions import RunCancelled, RunFailed

_ONE_MICROSECOND = timedelta(microseconds=1)

# One lock for every final transition: a worker finishing a task and a flow
# cancelling it must not both write a final state. Held for a few bytecodes.
_final_lock = threading.Lock()


class _Missing:
    def __repr__(self) -> str:
        return "<no result>"


NO_RESULT: Any = _Missing()


@dataclass(frozen=True, repr=False)
class RunState(State):
    """A final state that also carries the run's outcome.

    ``state.result()`` returns the value the run returned, or raises the
    exception it failed with. States read back from the store are plain
    :class:`~headway.core.states.State` objects: results live only in the
    process that ran the code.
    """

    outcome: Any = field(default=NO_RESULT, compare=False)
    error: BaseException | None = field(default=None, compare=False)

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; its exception if it failed (raised, or returned)."""
        if self.error is not None:
            if raise_on_failure:
                raise self.error
            return self.error
        if self.outcome is NO_RESULT:
            message = self.message or f"the run ended {self.type.value} without a result"
            exc = RunFailed(message)
            if raise_on_failure:
                raise exc
            return exc
        return self.outcome


def final_state(
    type: StateType,
    name: str = "",
    message: str | None = None,
    *,
    outcome: Any = NO_RESULT,
    error: BaseException | None = None,
) -> RunState:
    """A final state carrying ``outcome`` or ``error``."""
    return RunState(type, name, message=message, outcome=outcome, error=error)


def state_result(state: State, raise_on_failure: bool = True) -> Any:
    """The outcome of a final state: RunState's own, or an error naming the state."""
    if isinstance(state, RunState):
        return state.result(raise_on_failure)
    message = state.message or f"the run ended {state.name}"
    exc = RunCancelled(message) if state.type is StateType.CANCELLED else RunFailed(message)
    if raise_on_failure:
        raise exc
    return exc


def plain(state: State) -> State:
    """``state`` without an outcome (to send across processes or store)."""
    if type(state) is State:
        return state
    return State(state.type, state.name, state.timestamp, state.message, state.data)


class TaskRunTracker:
    """One task run in memory: identity, the states it went through, how often it ran."""

    __slots__ = (
        "client",
        "created",
        "flow_run_id",
        "id",
        "name",
        "run_count",
        "sent",
        "states",
        "tags",
        "task_key",
    )

    def __init__(
        self,
        id: str,
        flow_run_id: str | None,
        name: str,
        task_key: str,
        tags: tuple[str, ...],
        client: Any,
        first: State,
    ) -> None:
        check_transition(None, first.type)
        self.id = id
        self.flow_run_id = flow_run_id
        self.name = name
        self.task_key = task_key
        self.tags = tags
        self.client = client
        self.created = time.time()
        self.states: list[State] = [first]
        self.sent = 0
        self.run_count = 0

    @property
    def state(self) -> State:
        """The latest state."""
        return self.states[-1]

    def set_state(self, state: State) -> bool:
        """Append ``state`` if the state machine allows it; False when the run already ended.

        A run that already reached a final state (cancelled by its flow while a
        worker still ran it) keeps that state: the late one is dropped.
        """
        if state.type in _FINAL:
            with _final_lock:
                return self._append(state)
        return self._append(state)

    def _append(self, state: State) -> bool:
        states = self.states
        last = states[-1]
        if last.type in _FINAL:
            return False
        if state.type not in _ALLOWED[last.type]:
            check_transition(last.type, state.type)  # raises IllegalTransition
        if state.timestamp <= last.timestamp:
            # The store appends only states newer than the stored one: keep
            # every run's timestamps strictly increasing.
            state = replace(state, timestamp=last.timestamp + _ONE_MICROSECOND)
        if state.type is StateType.RUNNING:
            self.run_count += 1
        states.append(state)
        return True

    def take_record(self) -> TaskRunRecord | None:
        """The states not yet written, as a record (None when there are none)."""
        states = self.states
        end = len(states)
        if end <= self.sent:
            return None
        # Final states go as they are (a RunState is a State; the store reads
        # only the state's own fields): copying them costs more than the write.
        new = tuple(states[self.sent : end])
        self.sent = end
        return TaskRunRecord(
            id=self.id,
            flow_run_id=self.flow_run_id,
            name=self.name,
            task_key=self.task_key,
            tags=self.tags,
            created=self.created,
            states=new,
            run_count=self.run_count,
        )

    def unsend(self, record: TaskRunRecord) -> None:
        """A write failed: its states will be sent again with the next record."""
        self.sent = max(0, self.sent - len(record.states))


_FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})


def cancelled_state(message: str, name: str = "") -> RunState:
    """CANCELLED, whose result raises :class:`~headway.exceptions.RunCancelled`."""
    return final_state(StateType.CANCELLED, name, message, error=RunCancelled(message))
