"""``headway status``: one screen with runs by state, busiest limits, waiting runs, workers."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import typer

from headway.cli.output import check_output_format, emit_json
from headway.cli.why import (
    ago,
    client,
    console,
    duration,
    fetching,
    sleep,
    slots,
    until_interrupted,
)
from headway.core.states import TERMINAL

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).


def render(report: Any) -> None:
    """The status screen for people."""
    from rich.markup import escape
    from rich.table import Table

    out = console()
    now = datetime.now(UTC)
    counts = report.runs_by_state
    shown = ", ".join(f"{n} {state}" for state, n in counts.items()) if counts else "none yet"
    out.print(f"[bold]Flow runs[/bold]: {shown}")

    limits = Table(title="Busiest limits", title_justify="left")
    for column in ("limit", "taken", "waiters", "grants", "denials", "expiries", "avg hold",
                   "avg occupancy"):  # fmt: skip
        limits.add_column(column, justify="left" if column == "limit" else "right")
    for s in report.limits:
        taken = f"{slots(s.active_slots)}/{s.limit}" if s.active else "inactive"
        limits.add_row(
            escape(s.name), taken, str(s.waiters), str(s.grants), str(s.denials),
            str(s.expiries), duration(s.average_hold_seconds), f"{s.average_occupancy:.2f}",
        )  # fmt: skip
    out.print(limits if report.limits else "No limits: nothing is limited (the default).")

    waiting = Table(title=f"Waiting now ({len(report.waiting)})", title_justify="left")
    for column in ("run", "kind", "waits on", "since", "detail"):
        waiting.add_column(column)
    for w in report.waiting:
        label = f"{w.name} ({w.run_id})" if w.name else (w.run_id or "-")
        waiting.add_row(
            escape(label), w.kind, escape(w.limit_name or "-"), ago(w.since, now), escape(w.detail)
        )
    out.print(waiting if report.waiting else "Nothing is waiting for a slot.")

    workers = Table(title=f"Workers seen recently ({len(report.workers)})", title_justify="left")
    for column in ("worker", "pool", "host", "pid", "running", "last heard", "online"):
        workers.add_column(column)
    for w in report.workers:
        workers.add_row(
            escape(w.name), escape(w.pool or "(serve)"), escape(w.host or "-"),
            str(w.pid or "-"), str(w.running), ago(w.last_heartbeat, now),
            "yes" if w.online else "no",
        )  # fmt: skip
    out.print(workers if report.workers else "No workers seen in the last 10 minutes.")
    if report.waiting:
        out.print("Ask why one waits: headway why RUN_ID")


def status(
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """One screen: runs by state, busiest limits, runs waiting now, workers seen recently."""
    check_output_format(output)
    report = fetching("Reading status...", lambda: client().status())
    if output == "json":
        emit_json(report)
        return
    render(report)


def runs_table(runs: list[Any], title: str) -> Any:
    """Flow runs as a table: state, what a waiting run waits for, start and duration."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("id", "name", "deployment / flow", "state", "note", "started", "duration"):
        table.add_column(column, no_wrap=column in {"id", "state"})
    for run in runs:
        state = run.state
        label = state.type.value
        if state.name and state.name.upper() != state.type.value:
            label += f" ({state.name})"
        table.add_row(
            run.id,
            escape(run.name),
            escape(run.deployment or run.flow_name),
            escape(label),
            escape(state.message or ""),
            "-" if run.start_time is None else run.start_time.astimezone().strftime("%H:%M:%S"),
            duration(run.duration_seconds),
        )
    return table


def watch_runs(deployment: str | None, count: int, interval: float) -> None:
    """Redraw the newest flow runs every ``interval`` seconds until Ctrl-C.

    On a terminal the table updates in place; piped, a new table is printed each time.
    """
    source = client()
    if deployment is not None:
        source.read_deployment(deployment)  # an unknown name fails at once, not as an empty table
    scope = f" of {deployment}" if deployment else ""

    def build() -> Any:
        runs = source.list_flow_runs(limit=count, deployment=deployment)
        stamp = datetime.now().strftime("%H:%M:%S")
        return runs_table(runs, f"Flow runs{scope} (newest {count}; {stamp}; Ctrl-C to stop)")

    out = console()
    with until_interrupted():
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(build(), console=out, auto_refresh=False) as live:
                while True:
                    sleep(interval)
                    live.update(build(), refresh=True)
        else:
            while True:
                out.print(build())
                sys.stdout.flush()
                sleep(interval)


def follow_logs(source: Any, run: Any, output: str) -> None:
    """Print a flow run's log lines as they come, until it ends (or Ctrl-C).

    ``-o json`` prints one JSON object per line.
    """
    names: dict[str, str] = {}
    after = 0

    def show(page: list[Any]) -> None:
        unknown = {line.task_run_id for _, line in page if line.task_run_id} - set(names)
        if unknown:
            names.update({t.id: t.name for t in source.read_task_runs(run.id)})
        for line_id, line in page:
            task = names.get(line.task_run_id) if line.task_run_id else None
            if output == "json":
                typer.echo(
                    json.dumps(
                        {
                            "id": line_id,
                            "timestamp": line.timestamp.isoformat(),
                            "level": line.level_name,
                            "logger": line.logger,
                            "flow_run_id": line.flow_run_id,
                            "task_run_id": line.task_run_id,
                            "task_run_name": task,
                            "message": line.message,
                        }
                    )
                )
                continue
            when = line.timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            who = f"Task run {task or line.task_run_id!r}" if line.task_run_id else "Flow run"
            if not line.task_run_id:
                who += f" {run.name!r}"
            typer.echo(f"{when} | {line.level_name:<7} | {who} - {line.message}")

    with until_interrupted():
        while True:
            # Whether it had ended is read before the lines, so none written last is missed.
            ended = source.read_flow_run(run.id).state.type in TERMINAL
            while True:
                page = source.read_logs(run.id, after_id=after)
                if not page:
                    break
                show(page)
                after = page[-1][0]
            if ended:
                return
            sleep(0.5)
