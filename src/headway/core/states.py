"""The one state machine of flow runs and task runs.

Every allowed transition is in :data:`ALLOWED`; nothing else in headway decides
whether a state change is legal. Named sub-states (``AwaitingConcurrencySlot``,
``Late``, ``AwaitingRetry``, ``Retrying``, ...) are names on a :class:`State`
of one of the types, not types of their own.

Final means final: COMPLETED, FAILED, CRASHED and CANCELLED (:data:`TERMINAL`)
have no way out, for flow runs and task runs alike, and the store refuses any
state after one. A retry never leaves a final state: a failed attempt that will
be retried goes RUNNING -> SCHEDULED (``AwaitingRetry``) instead of FAILED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from headway.exceptions import IllegalTransition


class StateType(enum.StrEnum):
    """The kinds of state a run can be in."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"


S = StateType

#: States a run never leaves.
TERMINAL: frozenset[StateType] = frozenset({S.COMPLETED, S.FAILED, S.CRASHED, S.CANCELLED})

#: States in which a run is doing, or about to do, work.
ACTIVE: frozenset[StateType] = frozenset({S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED})

#: Allowed ``from -> to`` transitions. ``None`` is a run that has no state yet.
ALLOWED: dict[StateType | None, frozenset[StateType]] = {
    None: frozenset({S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLED, S.FAILED}),
    # SCHEDULED -> SCHEDULED renames the sub-state (Late, AwaitingConcurrencySlot).
    S.SCHEDULED: frozenset(
        {S.SCHEDULED, S.PENDING, S.RUNNING, S.CANCELLING, S.CANCELLED, S.CRASHED, S.FAILED}
    ),
    # PENDING -> SCHEDULED: a claimed run that must wait again (AwaitingConcurrencySlot).
    S.PENDING: frozenset(
        {S.SCHEDULED, S.RUNNING, S.CANCELLING, S.CANCELLED, S.CRASHED, S.FAILED, S.COMPLETED}
    ),
    # RUNNING -> SCHEDULED is AwaitingRetry; RUNNING -> RUNNING is Retrying.
    S.RUNNING: frozenset(
        {
            S.RUNNING,
            S.SCHEDULED,
            S.PAUSED,
            S.COMPLETED,
            S.FAILED,
            S.CRASHED,
            S.CANCELLING,
            S.CANCELLED,
        }
    ),
    S.PAUSED: frozenset(
        {S.RUNNING, S.PENDING, S.SCHEDULED, S.CANCELLING, S.CANCELLED, S.CRASHED, S.FAILED}
    ),
    # A run may finish on its own before a cancellation reaches it.
    S.CANCELLING: frozenset({S.CANCELLED, S.CRASHED, S.FAILED, S.COMPLETED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CRASHED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Well-known sub-state names.
AWAITING_CONCURRENCY_SLOT = "AwaitingConcurrencySlot"
LATE = "Late"
AWAITING_RETRY = "AwaitingRetry"
RETRYING = "Retrying"


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class State:
    """A run's state: its type, an optional sub-state name, when, and why."""

    type: StateType
    name: str = ""
    timestamp: datetime = field(default_factory=now)
    message: str | None = None
    data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", _default_name(self.type))

    @property
    def is_final(self) -> bool:
        """True for COMPLETED, FAILED, CRASHED and CANCELLED."""
        return self.type in TERMINAL

    def is_completed(self) -> bool:
        """True when the run completed."""
        return self.type is S.COMPLETED

    def is_failed(self) -> bool:
        """True when the run failed."""
        return self.type is S.FAILED

    def is_crashed(self) -> bool:
        """True when the run crashed."""
        return self.type is S.CRASHED

    def is_cancelled(self) -> bool:
        """True when the run was cancelled."""
        return self.type is S.CANCELLED

    def is_running(self) -> bool:
        """True while the run runs."""
        return self.type is S.RUNNING

    def is_scheduled(self) -> bool:
        """True while the run waits to start."""
        return self.type is S.SCHEDULED

    def is_pending(self) -> bool:
        """True between claim and start."""
        return self.type is S.PENDING

    def __repr__(self) -> str:
        kind = "" if self.name == _default_name(self.type) else f" {self.type.value}"
        suffix = f", message={self.message!r}" if self.message else ""
        return f"State({self.name}{kind}{suffix})"


def _default_name(state_type: StateType) -> str:
    return state_type.value.capitalize()


def is_allowed(from_type: StateType | None, to_type: StateType) -> bool:
    """Whether the state machine allows ``from_type -> to_type``."""
    return to_type in ALLOWED[from_type]


def check_transition(from_type: StateType | None, to_type: StateType) -> None:
    """Raise :class:`IllegalTransition` unless ``from_type -> to_type`` is allowed."""
    if not is_allowed(from_type, to_type):
        origin = from_type.value if from_type else "no state"
        raise IllegalTransition(f"illegal state transition {origin} -> {to_type.value}")


def parse_state_type(value: str) -> StateType:
    """``"running"`` -> ``StateType.RUNNING``; a clear error for unknown names."""
    try:
        return StateType(value.strip().upper())
    except ValueError:
        from headway.exceptions import ValidationError

        names = ", ".join(t.value for t in StateType)
        raise ValidationError(f"unknown state {value!r}; expected one of {names}") from None


# Constructors for the common states.
def Scheduled(name: str = "", **kw: Any) -> State:
    """A SCHEDULED state."""
    return State(S.SCHEDULED, name, **kw)


def Pending(name: str = "", **kw: Any) -> State:
    """A PENDING state."""
    return State(S.PENDING, name, **kw)


def Running(name: str = "", **kw: Any) -> State:
    """A RUNNING state."""
    return State(S.RUNNING, name, **kw)


def Completed(name: str = "", **kw: Any) -> State:
    """A COMPLETED state."""
    return State(S.COMPLETED, name, **kw)


def Failed(name: str = "", **kw: Any) -> State:
    """A FAILED state."""
    return State(S.FAILED, name, **kw)


def Crashed(name: str = "", **kw: Any) -> State:
    """A CRASHED state."""
    return State(S.CRASHED, name, **kw)


def Cancelled(name: str = "", **kw: Any) -> State:
    """A CANCELLED state."""
    return State(S.CANCELLED, name, **kw)


def Cancelling(name: str = "", **kw: Any) -> State:
    """A CANCELLING state."""
    return State(S.CANCELLING, name, **kw)


def Paused(name: str = "", **kw: Any) -> State:
    """A PAUSED state."""
    return State(S.PAUSED, name, **kw)
