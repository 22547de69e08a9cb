"""``headway why RUN_ID``: why a run waits, what it waited for, or that nothing limits it.

The answer is the store's, not a guess (``Client.explain_run``): every limit in
the run's way with its holders (run, pid, host, since when), the requests ahead
and the run's position, the collision strategy in force, and an estimated
start from the limit's average hold time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer

from headway.cli.output import check_output_format, emit_json
from headway.exceptions import ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

T = TypeVar("T")


def client() -> Any:
    """The process's default client."""
    from headway.client.base import get_client

    return get_client()


def console() -> Any:
    """A Rich console (wide when piped, so ids and names are never cut)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def fetching(what: str, call: Callable[[], T]) -> T:
    """``call()``, with a spinner on a terminal while it runs (it may take a moment)."""
    if not sys.stderr.isatty():
        return call()
    from rich.console import Console

    with Console(stderr=True).status(what):
        return call()


def when(value: datetime | None) -> str:
    """A time for people: local, to the second."""
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or, for a future time, how soon) ``value`` is."""
    if value is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    text = duration(abs(seconds))
    return f"in {text}" if seconds < 0 else f"{text} ago"


def duration(seconds: float | None) -> str:
    """A duration for people: ms, s, m s, h m."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s"


def slots(value: float) -> str:
    """Slots as a whole number when they are one."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


@contextmanager
def until_interrupted() -> Iterator[None]:
    """Run a ``--follow``/``watch`` loop until Ctrl-C, which ends it cleanly (exit 0)."""
    try:
        yield
    except KeyboardInterrupt:
        pass


def _who(kind: str, run_id: str | None, name: str | None) -> str:
    from rich.markup import escape

    what = {"flow_run": "flow run", "task_run": "task run", "code": "code of run"}.get(kind, kind)
    if run_id is None:
        return escape(kind)
    return escape(f"{what} {name!r} ({run_id})" if name else f"{what} {run_id}")


def render(answer: Any) -> None:
    """The explanation for people."""
    from rich.markup import escape

    out = console()
    now = datetime.now(UTC)
    state = answer.state
    title = _who(answer.kind, answer.run_id, answer.name)
    if state is not None:
        sub = f" ({state.name})" if state.name and state.name.upper() != state.type.value else ""
        title += f" - [bold]{state.type.value}{escape(sub)}[/bold]"
    out.print(title)
    out.print(f"  {escape(answer.summary)}")
    if state is not None and state.message:
        out.print(f"  state message: {escape(state.message)}")
    for b in answer.blockers:
        out.print()
        limit = f"{slots(b.active_slots)}/{b.limit} slots taken" if b.active else "inactive"
        if b.closed:
            limit = "limit is 0: nothing is admitted until it is raised"
        out.print(
            f"[bold]Waiting for {escape(repr(b.limit_name))}[/bold] ({b.scope} limit): {limit}"
        )
        out.print(
            f"  position {b.position} of {b.waiting} waiting; asks {b.slots} slot(s) at"
            f" priority {b.priority}; waiting since {when(b.waiting_since)}"
            f" ({ago(b.waiting_since, now)})"
        )
        out.print(f"  strategy: {escape(b.strategy)}")
        if b.holders:
            out.print(f"  held by ({b.holder_count}):")
            for h in b.holders:
                out.print(
                    f"    {_who(h.kind, h.run_id, h.name)}: {h.slots} slot(s), pid {h.pid}"
                    f" on {escape(h.host)}, since {when(h.since)} ({ago(h.since, now)})"
                )
        elif b.active_slots:
            out.print("  held by: nobody with a lease (slots taken by hand, or a rate limit)")
        if b.ahead:
            out.print(f"  ahead of it ({b.waiters_ahead}):")
            for a in b.ahead:
                out.print(
                    f"    #{a.position} {_who(a.kind, a.run_id, a.name)}: {a.slots} slot(s),"
                    f" priority {a.priority}, since {when(a.since)}"
                )
            if b.waiters_ahead > len(b.ahead):
                out.print(f"    ... and {b.waiters_ahead - len(b.ahead)} more")
        if b.average_hold_seconds is not None:
            out.print(
                f"  average hold {duration(b.average_hold_seconds)},"
                f" average occupancy {b.average_occupancy:.2f} slot(s)"
            )
        if b.estimated_start is not None:
            out.print(
                f"  estimated start: {when(b.estimated_start)} ({ago(b.estimated_start, now)});"
                f" {escape(b.estimate)}"
            )
        else:
            out.print(f"  estimated start: unknown; {escape(b.estimate)}")
    if answer.holds:
        out.print()
        out.print("[bold]Holds[/bold]")
        for h in answer.holds:
            out.print(
                f"  {h.slots} slot(s) of {escape(repr(h.limit_name))} since {when(h.since)}"
                f" ({ago(h.since, now)})"
            )
    if answer.waited:
        out.print()
        total = duration(answer.total_wait_seconds)
        out.print(f"[bold]Waited[/bold] ({total} in all)")
        for w in answer.waited:
            what = {"slot": "for a slot of", "claim": "from due to claimed"}.get(
                w.what, f"as {w.what} on"
            )
            target = f" {escape(repr(w.limit_name))}" if w.limit_name else ""
            if w.what == "claim" and w.limit_name:
                target = f" (limit {escape(repr(w.limit_name))})"
            out.print(f"  {duration(w.seconds)} {what}{target}, until {when(w.until)}")
    if answer.details:
        out.print()
        out.print("[bold]Limits that could apply[/bold]")
        for line in answer.details:
            out.print(f"  {escape(line)}")


def why(
    run_id: str = typer.Argument(..., help="A flow run or task run id."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Why is this run waiting? Every limit in its way, who holds it, its place, an estimate."""
    check_output_format(output)
    run_id = run_id.strip()
    if not run_id:
        raise ValidationError("a run id is required")
    answer = fetching("Explaining...", lambda: client().explain_run(run_id))
    if output == "json":
        emit_json(answer)
        return
    render(answer)


def poll_interval(value: float) -> float:
    """A refresh interval, checked: between 0.1 and 60 seconds."""
    if not 0.1 <= value <= 60:
        raise ValidationError(f"--interval must be between 0.1 and 60 seconds, got {value:g}")
    return value


def sleep(seconds: float) -> None:
    """Wait between two polls of a follow loop (interruptible by Ctrl-C)."""
    time.sleep(seconds)
