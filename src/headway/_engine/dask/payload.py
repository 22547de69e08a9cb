"""What travels between the flow's process and a Dask worker: a run, its outcome, the settings."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headway.core.states import State
    from headway.settings import Settings


@dataclass(slots=True)
class _Payload:
    # A plain object, not a tuple: Dask does not look inside it for tasks or futures.
    task_run_id: str
    task_run_name: str
    flow_run_id: str | None
    created: float
    first: State
    run_count: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    log_prints: bool


@dataclass(slots=True)
class _Outcome:
    """What a worker sends back: the states after the first, and the result."""

    states: list[State]
    # (has a value, the value, the exception), pickled on the worker: once, and a
    # result that cannot travel is found there (``problem``), not in transit.
    result: bytes
    problem: str | None
    worker: str | None  # the Dask worker's address: where the records wait to be flushed


class _Failed:
    """A Dask task that ended without an outcome (its exception)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _plain(state: State) -> State:
    from headway._engine.tracking import plain

    return plain(state)


# -- settings travel with the task ------------------------------------------------------------
def settings_env(settings: Settings) -> tuple[tuple[str, str], ...]:
    """``settings`` as ``HEADWAY_*`` variables: a value where it differs from the default,
    ``""`` (unset) where it does not."""
    from headway.settings import Settings

    out = []
    for f in fields(Settings):
        var = f.metadata["env"]
        value = getattr(settings, f.name)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:  # pragma: no cover - every setting has a default
            default = None
        if value is None or value == default:
            out.append((var, ""))
        elif isinstance(value, bool):
            out.append((var, "true" if value else "false"))
        else:
            out.append((var, str(value)))
    return tuple(out)
