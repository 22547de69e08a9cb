"""The exit codes of ``deployment run --wait`` (the whole table: ``headway.cli``'s docstring)."""

from __future__ import annotations

from headway.core.states import StateType

#: ``deployment run --wait``'s exit code for the state its run ended in (any other: 5).
RUN_EXIT_CODES: dict[StateType, int] = {
    StateType.COMPLETED: 0,
    StateType.FAILED: 1,
    StateType.CANCELLED: 3,
    StateType.CRASHED: 4,
}
#: ``deployment run --wait --timeout``: the run had not ended in time.
RUN_NOT_ENDED_EXIT_CODE = 5


def run_exit_code(state: StateType) -> int:
    """The exit code for a run seen in ``state`` at the end of a wait (see the table above)."""
    return RUN_EXIT_CODES.get(state, RUN_NOT_ENDED_EXIT_CODE)
