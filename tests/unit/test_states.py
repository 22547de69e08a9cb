"""The state machine: every allowed and forbidden transition, and parsing."""

from __future__ import annotations

import pytest

from headway.core import states
from headway.core.states import ALLOWED, TERMINAL, State, StateType, check_transition
from headway.exceptions import IllegalTransition, ValidationError


def test_every_state_type_has_a_row() -> None:
    assert set(ALLOWED) == {None, *StateType}


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_are_final(terminal: StateType) -> None:
    for target in StateType:
        with pytest.raises(IllegalTransition):
            check_transition(terminal, target)
    assert State(terminal).is_final


@pytest.mark.parametrize(
    ("origin", "target"),
    [
        (None, StateType.PENDING),
        (StateType.SCHEDULED, StateType.PENDING),
        (StateType.PENDING, StateType.RUNNING),
        (StateType.RUNNING, StateType.COMPLETED),
        (StateType.RUNNING, StateType.SCHEDULED),  # AwaitingRetry
        (StateType.RUNNING, StateType.RUNNING),  # Retrying
        (StateType.CANCELLING, StateType.CANCELLED),
        (StateType.PAUSED, StateType.RUNNING),
    ],
)
def test_allowed(origin: StateType | None, target: StateType) -> None:
    check_transition(origin, target)


@pytest.mark.parametrize(
    ("origin", "target"),
    [
        (None, StateType.COMPLETED),
        (StateType.SCHEDULED, StateType.COMPLETED),
        (StateType.CANCELLING, StateType.RUNNING),
        (StateType.COMPLETED, StateType.RUNNING),
        (StateType.CANCELLED, StateType.SCHEDULED),
    ],
)
def test_forbidden(origin: StateType | None, target: StateType) -> None:
    with pytest.raises(IllegalTransition, match="illegal state transition"):
        check_transition(origin, target)


def test_default_and_sub_state_names() -> None:
    assert State(StateType.RUNNING).name == "Running"
    waiting = states.Scheduled(states.AWAITING_CONCURRENCY_SLOT)
    assert waiting.type is StateType.SCHEDULED
    assert waiting.name == "AwaitingConcurrencySlot"
    assert "AwaitingConcurrencySlot SCHEDULED" in repr(waiting)
    assert waiting.timestamp.tzinfo is not None


def test_parse_state_type() -> None:
    assert states.parse_state_type(" running ") is StateType.RUNNING
    with pytest.raises(ValidationError, match="unknown state 'runing'"):
        states.parse_state_type("runing")
