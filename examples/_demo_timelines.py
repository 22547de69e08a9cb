"""What the demo prints after each step: runs and slots as the store recorded them, as timelines.

Nothing here trusts the demo's own clock or memory: start and end times come
from the runs' recorded states, waits and holds from the limits' recorded
grants, denials and releases (the events ``headway events`` shows).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from headway.core.states import StateType

if TYPE_CHECKING:
    from rich.console import Console

    from headway.client.base import Client
    from headway.core.models import FlowRun, TaskRun


@dataclass(frozen=True)
class Span:
    """One row of a timeline: waiting from ``waiting`` until ``granted``, then (for a
    deployment's run, once its process has started) working from ``start`` to ``end``."""

    label: str
    state: str
    waiting: datetime | None
    granted: datetime | None
    start: datetime | None
    end: datetime | None

    @property
    def waited(self) -> float | None:
        """Seconds spent waiting (to the end, for one that never got its slot)."""
        if self.waiting is None:
            return None
        return ((self.granted or self.end or self.waiting) - self.waiting).total_seconds()


def _state(state_type: StateType, name: str = "") -> str:
    default = state_type.value.title()
    return state_type.value + (f" ({name})" if name and name != default else "")


def run_span(client: Client, run: FlowRun, label: str | None = None) -> Span:
    """A flow run. A deployment's run waits from its creation until it is claimed
    (PENDING: its slots taken), then its process starts, then it runs."""
    run = client.read_flow_run(run.id)
    waiting = granted = None
    if run.deployment is not None:
        waiting = run.created
        claimed = [s.timestamp for s in client.read_states(run.id) if s.type is StateType.PENDING]
        granted = claimed[0] if claimed else None
    state = _state(run.state.type, run.state.name)
    return Span(label or run.name, state, waiting, granted, run.start_time, run.end_time)


def task_span(task_run: TaskRun, label: str | None = None) -> Span:
    """A task run, from its start to its end."""
    state = _state(task_run.state.type)
    return Span(label or task_run.name, state, None, None, task_run.start_time, task_run.end_time)


def slot_span(client: Client, run: FlowRun | TaskRun, limit: str, label: str | None = None) -> Span:
    """A run's time on one limit: waiting from its first denial, holding from its grant
    to its release. A run that never got the slot waited until it ended."""
    events = client.read_events(run_id=run.id, limit_name=limit, limit=100).events
    first: dict[str, datetime] = {}
    for event in events:
        first.setdefault(event.kind, event.timestamp)
    granted = first.get("slot.granted")
    end = first.get("slot.released") if granted else run.end_time
    state = _state(run.state.type)
    return Span(label or run.name, state, first.get("slot.denied"), granted, granted, end)


def overlap(a: Span, b: Span) -> float:
    """Seconds during which both were working (negative: the gap between them)."""
    assert a.start and a.end and b.start and b.end
    return (min(a.end, b.end) - max(a.start, b.start)).total_seconds()


def handoff(before: Span, after: Span) -> float:
    """Seconds from ``before`` ending to ``after`` getting its slot."""
    assert before.end and after.granted
    return (after.granted - before.end).total_seconds()


def at_once(spans: Sequence[Span]) -> str:
    """How the spans' working times relate: all at once for a while, or never two at once."""
    shared = [overlap(a, b) for a, b in itertools.combinations(spans, 2)]
    if all(seconds > 0 for seconds in shared):
        pairs = "together" if len(shared) == 1 else "every pair for at least"
        return f"at once ({pairs} {min(shared):.2f} s)"
    if all(seconds <= 0 for seconds in shared):
        return f"one at a time (never two at once; the closest {-max(shared) * 1000:.0f} ms apart)"
    return "partly at once"


def show(console: Console, spans: Sequence[Span], working: str = "ran") -> None:
    """A table of spans with a timeline: ░ waiting, ▒ starting, █ working."""
    from rich.table import Table

    # The timeline takes what the other columns leave (up to 36 characters).
    longest = max(len(s.label) + len(s.state) for s in spans)
    width = max(12, min(36, console.width - longest - 42))

    times = [t for s in spans for t in (s.waiting, s.granted, s.start, s.end) if t is not None]
    origin, last = min(times), max(times)
    scale = max((last - origin).total_seconds(), 1e-6) / width

    def at(t: datetime) -> float:
        return (t - origin).total_seconds()

    def paint(bar: list[str], mark: str, begin: datetime | None, end: datetime | None) -> None:
        if begin is None:
            return
        first = min(int(at(begin) / scale), width - 1)
        for i in range(first, max(first + 1, min(width, round(at(end or last) / scale)))):
            bar[i] = mark

    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("run", "state", "waited", f"{working} (s)", "timeline"):
        table.add_column(column, justify="right" if column == "waited" else "left")
    for s in spans:
        bar = [" "] * width
        paint(bar, "░", s.waiting, s.granted or s.start or s.end)
        paint(bar, "▒", s.granted, s.start)
        paint(bar, "█", s.start, s.end)
        waited = "-" if s.waited is None else f"{s.waited:.2f}s"
        ran = "-" if s.start is None else f"{at(s.start):5.2f}-{at(s.end or last):5.2f}"
        table.add_row(f"  {s.label}", s.state, waited, ran, "[cyan]" + "".join(bar) + "[/cyan]")
    console.print(table)


def by_start(spans: Sequence[Span]) -> list[Span]:
    """The spans in the order they started working (those that never did last)."""
    return sorted(spans, key=lambda s: (s.start is None, s.start.timestamp() if s.start else 0))


def runs_since(client: Client, flow_name: str, since: datetime) -> list[FlowRun]:
    """The runs of ``flow_name`` created since ``since``, oldest first."""
    runs = client.list_flow_runs(flow_name=flow_name, limit=50)
    mine = [r for r in runs if r.created is not None and r.created >= since]
    return sorted(mine, key=lambda r: r.created or since)
