"""``headway flow-run``: list flow runs, inspect one with its task runs, print its logs."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import typer

from headway.cli.output import check_output_format
from headway.cli.status import follow_logs, watch_runs
from headway.cli.why import poll_interval
from headway.core.states import parse_state_type
from headway.exceptions import ObjectNotFound, ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "flow-run"

app = typer.Typer(
    help="Flow runs: list them, inspect one with its task runs, print its logs.",
    no_args_is_help=True,
)


def _client() -> Any:
    from headway.client.base import get_client

    return get_client()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: datetime | None) -> str:
    """A time for tables: local, to the second."""
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _console() -> Any:
    from rich.console import Console

    # Piped output has no terminal width: do not cut ids and names at 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds >= 0.001 else "<1ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


def _state_json(state: Any) -> dict[str, Any]:
    return {
        "type": state.type.value,
        "name": state.name,
        "timestamp": _iso(state.timestamp),
        "message": state.message,
    }


def flow_run_json(run: Any) -> dict[str, Any]:
    """The JSON of a flow run (the fields ``ls`` and ``inspect`` share)."""
    return {
        "id": run.id,
        "name": run.name,
        "flow_name": run.flow_name,
        "deployment": run.deployment,
        "state": _state_json(run.state),
        "parameters": run.parameters,
        "tags": list(run.tags),
        "parent_task_run_id": run.parent_task_run_id,
        "created": _iso(run.created),
        "updated": _iso(run.updated),
        "expected_start_time": _iso(run.expected_start_time),
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "duration_seconds": run.duration_seconds,
        "run_count": run.run_count,
        "work_pool": run.work_pool,
        "work_queue": run.work_queue,
    }


def task_run_json(run: Any) -> dict[str, Any]:
    """The JSON of a task run."""
    duration = None
    if run.start_time is not None and run.end_time is not None:
        duration = (run.end_time - run.start_time).total_seconds()
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "name": run.name,
        "task_key": run.task_key,
        "state": _state_json(run.state),
        "tags": list(run.tags),
        "created": _iso(run.created),
        "updated": _iso(run.updated),
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "duration_seconds": duration,
        "run_count": run.run_count,
    }


def _read(client: Any, run_id: str, *, with_task_runs: bool = False) -> Any:
    run_id = run_id.strip()
    if not run_id:
        raise ValidationError("a flow run id is required")
    return client.read_flow_run(run_id, with_task_runs=with_task_runs)


@app.command("ls")
def ls(
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs, newest first."),
    state: list[str] | None = typer.Option(
        None, "--state", "-s", help="Only runs in this state (repeat for several)."
    ),
    flow_name: str | None = typer.Option(None, "--flow", help="Only runs of this flow."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """List flow runs, newest first."""
    check_output_format(output)
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    states = [parse_state_type(s) for s in state] if state else None
    runs = _client().list_flow_runs(limit=limit, states=states, flow_name=flow_name)
    if output == "json":
        typer.echo(json.dumps([flow_run_json(r) for r in runs], indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Flow runs ({len(runs)})", title_justify="left")
    for column in ("id", "name", "flow", "state", "started", "duration"):
        table.add_column(column, no_wrap=column in {"id", "state"})
    for run in runs:
        table.add_row(
            run.id,
            run.name,
            run.flow_name,
            _state_label(run.state),
            _when(run.start_time),
            _duration(run.duration_seconds),
        )
    _console().print(table)
    if not runs:
        typer.echo("No flow runs match." if state or flow_name else "No flow runs yet.")


def _state_label(state: Any) -> str:
    if state.name and state.name.upper() != state.type.value:
        return f"{state.type.value} ({state.name})"
    return str(state.type.value)


@app.command("inspect")
def inspect(
    flow_run_id: str = typer.Argument(..., help="The flow run's id."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Show one flow run: its state, parameters, parent, state history and task runs."""
    check_output_format(output)
    client = _client()
    run = _read(client, flow_run_id, with_task_runs=True)
    parent_flow_run_id = None
    parent_task_run = None
    if run.parent_task_run_id:
        try:
            parent_task_run = client.read_task_run(run.parent_task_run_id)
            parent_flow_run_id = parent_task_run.flow_run_id
        except ObjectNotFound:
            parent_task_run = None
    history = client.read_states(run.id)
    task_runs = list(run.task_runs or ())
    if output == "json":
        data = flow_run_json(run)
        data["parent_flow_run_id"] = parent_flow_run_id
        data["state_history"] = [_state_json(s) for s in history]
        data["task_runs"] = [task_run_json(t) for t in task_runs]
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.table import Table

    console = _console()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("id", run.id)
    summary.add_row("name", run.name)
    summary.add_row("flow", run.flow_name)
    summary.add_row("deployment", run.deployment or "-")
    summary.add_row("state", _state_label(run.state))
    if run.state.message:
        summary.add_row("message", run.state.message)
    if parent_task_run is not None:
        summary.add_row(
            "parent",
            f"flow run {parent_flow_run_id} (as task run {parent_task_run.name!r})",
        )
    summary.add_row("parameters", json.dumps(run.parameters))
    summary.add_row("tags", ", ".join(run.tags) or "-")
    summary.add_row("started", _when(run.start_time))
    summary.add_row("ended", _when(run.end_time))
    summary.add_row("duration", _duration(run.duration_seconds))
    summary.add_row("attempts", str(run.run_count))
    summary.add_row("created", _when(run.created))
    summary.add_row("updated", _when(run.updated))
    console.print(summary)
    states = Table(title="State history", title_justify="left")
    states.add_column("time")
    states.add_column("state")
    states.add_column("message")
    for s in history:
        states.add_row(_when(s.timestamp), _state_label(s), s.message or "")
    console.print(states)
    counts: dict[str, int] = {}
    for t in task_runs:
        counts[t.state.type.value] = counts.get(t.state.type.value, 0) + 1
    shown = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
    tasks = Table(title=f"Task runs ({len(task_runs)}: {shown})", title_justify="left")
    for column in ("id", "name", "state", "duration", "attempts"):
        tasks.add_column(column, no_wrap=column in {"id", "state"})
    limit = 200
    for t in task_runs[:limit]:
        duration = None
        if t.start_time is not None and t.end_time is not None:
            duration = (t.end_time - t.start_time).total_seconds()
        tasks.add_row(t.id, t.name, _state_label(t.state), _duration(duration), str(t.run_count))
    console.print(tasks)
    if len(task_runs) > limit:
        console.print(f"... and {len(task_runs) - limit} more (use -o json for all)")


@app.command("watch")
def watch(
    deployment: str | None = typer.Option(
        None, "--deployment", "-d", help="Only runs of this deployment (<flow>/<name>)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs, newest first."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between refreshes."),
) -> None:
    """A live table of flow runs (state, what a waiting run waits for) until Ctrl-C."""
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    watch_runs(deployment, limit, poll_interval(interval))


@app.command("logs")
def logs(
    flow_run_id: str = typer.Argument(..., help="The flow run's id."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing new lines until the run ends (or Ctrl-C)."
    ),
) -> None:
    """Print the log lines of a flow run and its task runs, oldest first."""
    check_output_format(output)
    if follow:
        follow_logs(_client(), _read(_client(), flow_run_id), output)
        return
    client = _client()
    run = _read(client, flow_run_id)
    names = {t.id: t.name for t in client.read_task_runs(run.id)}
    lines = []
    after = 0
    while True:  # pages until the end, so long runs print whole
        page = client.read_logs(run.id, after_id=after)
        if not page:
            break
        lines.extend(page)
        after = page[-1][0]
    if output == "json":
        payload = [
            {
                "id": line_id,
                "timestamp": _iso(line.timestamp),
                "level": line.level_name,
                "logger": line.logger,
                "flow_run_id": line.flow_run_id,
                "task_run_id": line.task_run_id,
                "task_run_name": names.get(line.task_run_id) if line.task_run_id else None,
                "message": line.message,
            }
            for line_id, line in lines
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    if not lines:
        typer.echo(f"No logs for flow run {run.name!r} ({run.id}).", err=True)
        return
    for _, line in lines:
        when = line.timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if line.task_run_id:
            source = f"Task run {names.get(line.task_run_id, line.task_run_id)!r}"
        else:
            source = f"Flow run {run.name!r}"
        typer.echo(f"{when} | {line.level_name:<7} | {source} - {line.message}")


@app.command("cancel")
def cancel(
    run_id: str = typer.Argument(..., help="The flow run's id."),
    message: str | None = typer.Option(None, "--message", "-m", help="Why (shown on the run)."),
) -> None:
    """Cancel a flow run: at once if not started; else it ends CANCELLED once stopped where
    it runs: by its worker (SIGTERM, then SIGKILL after a grace period), or, started by a
    script, by its own process, which interrupts the flow's code within about 2 s."""
    run = _client().cancel_flow_run(run_id, message)
    if run.state.is_final:
        typer.echo(f"Cancelled flow run {run.name!r} ({run.id})")
    else:
        where = "its worker" if run.deployment else "its process"
        typer.echo(f"Cancelling flow run {run.name!r} ({run.id}): {where} is stopping it")
