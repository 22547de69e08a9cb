"""``headway deployment``: list, inspect, run, pause, resume, delete; set or clear a limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from headway.cli import _deploying as common
from headway.cli.exit_codes import run_exit_code
from headway.cli.output import check_output_format, emit_json
from headway.core.deployments import validate_concurrency_limit, validate_strategy
from headway.exceptions import ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

if TYPE_CHECKING:
    from headway.core.models import Deployment

NAME = "deployment"
#: Prefect's plural spelling, accepted and left out of the help.
ALIASES = ("deployments",)

app = typer.Typer(
    help="Deployments (<flow>/<name>): list, inspect, run, pause, resume, delete, and their"
    " concurrency limit (default: none, runs overlap).",
    no_args_is_help=True,
)

NameArg = typer.Argument(..., help="The deployment, as <flow-name>/<deployment-name>.")


def _limit_cell(dep: Any) -> str:
    if dep.concurrency_limit is None:
        return "none (runs overlap)"
    text = f"{dep.concurrency_limit} {dep.collision_strategy}"
    if dep.concurrency_key:
        text += f" per {dep.concurrency_key}"
    return text


@app.command("ls")
def ls(
    pool: str | None = typer.Option(None, "--pool", help="Only deployments of this work pool."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """List deployments."""
    check_output_format(output)
    deployments = common.client().list_deployments(work_pool=pool)
    if output == "json":
        emit_json(deployments)
        return
    from rich.table import Table

    table = Table(title="deployments")
    for column in ("name", "pool", "schedules", "concurrency limit", "paused"):
        table.add_column(column)
    for dep in deployments:
        schedules = "; ".join(common.schedule_text(s.schedule) for s in dep.schedules) or "-"
        table.add_row(
            dep.full_name,
            dep.work_pool or "(served)",
            schedules,
            _limit_cell(dep),
            "yes" if dep.paused else "no",
        )
    common.console().print(table)


def code_source_text(dep: Deployment) -> str:
    """Where the workers of ``dep`` get its code, in words."""
    if dep.code_repository:
        ref = dep.code_ref or "its default branch"
        return f"git {dep.code_repository} at {ref}, checked out by each worker before a run"
    path = (dep.entrypoint or "").rpartition(":")[0]
    if path.startswith("/"):
        return f"{path} on the worker's machine (an absolute path)"
    return "the worker's working directory (headway worker start --working-dir)"


@app.command("inspect")
def inspect(
    name: str = NameArg,
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Show a deployment: entrypoint, parameters, schedules, pool, limit."""
    check_output_format(output)
    dep = common.client().read_deployment(name)
    if output == "json":
        emit_json(dep)
        return
    con = common.console()
    con.print(f"[bold]{dep.full_name}[/bold]  id {dep.id}")
    rows = [
        ("entrypoint", dep.entrypoint or "-"),
        ("code", code_source_text(dep)),
        ("work pool", dep.work_pool or "(served by flow.serve())"),
        ("work queue", dep.work_queue or "-"),
        ("parameters", str(dep.parameters)),
        ("tags", ", ".join(dep.tags) or "-"),
        ("paused", "yes" if dep.paused else "no"),
        ("concurrency limit", _limit_cell(dep)),
        ("created", common.when(dep.created)),
        ("updated", common.when(dep.updated)),
    ]
    for label, value in rows:
        con.print(f"  {label:<18} {value}", highlight=False)
    if dep.schedules:
        con.print("  schedules:")
        now = datetime.now(UTC)
        for s in dep.schedules:
            nxt = common.schedule_next(s.schedule, now)
            con.print(f"    - {common.schedule_text(s.schedule)}: {nxt}", highlight=False)
    else:
        con.print("  schedules:         none")


def _by_id(deployment_id: str) -> str:
    """The ``<flow>/<name>`` of the deployment with this id (exit 2 if none)."""
    from headway.exceptions import ObjectNotFound

    for dep in common.client().list_deployments():
        if dep.id == deployment_id:
            return str(dep.full_name)
    raise ObjectNotFound(f"no deployment with id {deployment_id!r} (see `headway deployment ls`)")


def _named(name: str | None, deployment_id: str | None) -> str:
    from headway.exceptions import ValidationError

    if (name is None) == (deployment_id is None):
        raise ValidationError("give the deployment as <flow>/<name> or with --id, not both")
    return name if name is not None else _by_id(deployment_id or "")


def _start_time(
    scheduled_time: str | None, start_at: str | None, start_in: str | None
) -> datetime | None:
    """When the run is due: --start-at / --scheduled-time (ISO 8601) or --start-in (a duration)."""
    from datetime import timedelta

    from headway.core.schedules import parse_duration
    from headway.exceptions import ValidationError

    given = [v for v in (scheduled_time, start_at, start_in) if v is not None]
    if len(given) > 1:
        raise ValidationError("give one of --start-at, --start-in and --scheduled-time")
    if start_in is not None:
        duration = start_in.strip().removeprefix("in ").strip()
        try:
            seconds = parse_duration(duration)
        except ValidationError:
            raise ValidationError(
                f"invalid --start-in {start_in!r}; use a duration such as 30s, 5m, 2h or 1d"
            ) from None
        return datetime.now(UTC) + timedelta(seconds=seconds)
    text = scheduled_time if scheduled_time is not None else start_at
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"invalid start time {text!r}; use ISO 8601") from None
    return when if when.tzinfo is not None else when.astimezone(UTC)


def _run_name(template: str, parameters: dict[str, Any]) -> str:
    """``--flow-run-name`` filled from the run's parameters (the deployment's, then those given)."""
    try:
        return template.format(**parameters)
    except KeyError as exc:
        raise ValidationError(
            f"--flow-run-name {template!r} names {exc.args[0]!r}, which is not a parameter"
            " of this run"
        ) from None
    except (IndexError, AttributeError, ValueError) as exc:
        raise ValidationError(f"cannot fill --flow-run-name {template!r}: {exc}") from None


@app.command("run")
def run(
    name: str | None = typer.Argument(
        None, help="The deployment, as <flow-name>/<deployment-name> (or use --id)."
    ),
    deployment_id: str | None = typer.Option(None, "--id", help="The deployment's id."),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="A parameter, name=value (value as JSON if it parses)."
    ),
    params: str | None = typer.Option(
        None, "--params", help="All parameters as one JSON object, e.g. '{\"x\": 1}'."
    ),
    start_in: str | None = typer.Option(
        None, "--start-in", help="Due after this long: 30s, 5m, 2h, 1d ('in 5m' also works)."
    ),
    start_at: str | None = typer.Option(None, "--start-at", help="Due at this time (ISO 8601)."),
    wait: bool = typer.Option(
        False,
        "--wait",
        "--watch",
        help="Wait for the run to end. Exit 0 if it COMPLETED, 1 FAILED, 3 CANCELLED,"
        " 4 CRASHED, 5 not ended within --timeout.",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="With --wait: give up after this many seconds (exit 5)."
    ),
    priority: int = typer.Option(0, "--priority", help="Higher starts first among waiting runs."),
    scheduled_time: str | None = typer.Option(
        None, "--scheduled-time", help="When it is due (ISO 8601; default: now)."
    ),
    tag: list[str] | None = typer.Option(
        None, "--tag", help="A tag added to the run's (repeat for several)."
    ),
    flow_run_name: str | None = typer.Option(
        None,
        "--flow-run-name",
        help="The run's name; may name parameters, e.g. 'load-{day}' (default: generated).",
    ),
) -> None:
    """Create a run of a deployment now (or at --start-at / --start-in).

    With --wait (or --watch), the exit code tells how the run ended: 0 COMPLETED,
    1 FAILED, 3 CANCELLED, 4 CRASHED, 5 not ended within --timeout (2: bad input).
    """
    import json

    from headway.deployments.run import run_deployment

    when = _start_time(scheduled_time, start_at, start_in)
    parameters = common.params(param)
    if params is not None:
        try:
            given = json.loads(params)
        except ValueError as exc:
            raise ValidationError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ValidationError("--params must be a JSON object of parameter names to values")
        parameters = {**given, **parameters}
    name = _named(name, deployment_id)
    client = common.client()
    run_name = None
    if flow_run_name is not None:
        defaults = client.read_deployment(name).parameters
        run_name = _run_name(flow_run_name, {**defaults, **parameters})
    flow_run = run_deployment(
        name,
        parameters=parameters,
        timeout=timeout if wait else 0,
        scheduled_time=when,
        priority=priority,
        flow_run_name=run_name,
        tags=tag,
        client=client,
    )
    typer.echo(f"Created flow run {flow_run.name!r} ({flow_run.id}) of {name}")
    if wait:
        typer.echo(f"Flow run {flow_run.id} is {flow_run.state.name}"
                   + (f": {flow_run.state.message}" if flow_run.state.message else ""))  # fmt: skip
        code = run_exit_code(flow_run.state.type)
        if code:
            raise typer.Exit(code)


@app.command("pause")
def pause(name: str = NameArg) -> None:
    """Pause a deployment's schedules (runs created ahead are removed)."""
    common.client().update_deployment(name, paused=True)
    typer.echo(f"Paused deployment {name}")


@app.command("resume")
def resume(name: str = NameArg) -> None:
    """Resume a deployment's schedules."""
    common.client().update_deployment(name, paused=False)
    typer.echo(f"Resumed deployment {name}")


@app.command("delete")
def delete(
    name: str | None = typer.Argument(
        None, help="The deployment, as <flow-name>/<deployment-name> (or --id, or --all)."
    ),
    deployment_id: str | None = typer.Option(None, "--id", help="The deployment's id."),
    delete_all: bool = typer.Option(False, "--all", help="Delete every deployment."),
) -> None:
    """Delete a deployment (its runs not started yet are cancelled)."""
    from headway.exceptions import ValidationError

    client = common.client()
    if delete_all:
        if name is not None or deployment_id is not None:
            raise ValidationError("--all deletes every deployment; give no name or --id with it")
        deployments = client.list_deployments()
        for dep in deployments:
            client.delete_deployment(dep.full_name)
            typer.echo(f"Deleted deployment {dep.full_name} ({dep.id})")
        typer.echo(f"Deleted {len(deployments)} deployment(s)")
        return
    name = _named(name, deployment_id)
    dep = client.read_deployment(name)
    client.delete_deployment(name)
    typer.echo(f"Deleted deployment {name} ({dep.id})")


@app.command("set-concurrency-limit", context_settings={"ignore_unknown_options": True})
def set_concurrency_limit(
    name: str = NameArg,
    value: int | None = typer.Argument(None, metavar="[N]", help="The limit (or use --limit)."),
    limit: int | None = typer.Option(None, "--limit", help="Runs of the deployment at once."),
    collision_strategy: str | None = typer.Option(
        None,
        "--collision-strategy",
        help="ENQUEUE (wait, default), CANCEL_NEW or CANCEL_IN_PROGRESS.",
    ),
    concurrency_key: str | None = typer.Option(
        None, "--concurrency-key", help="A template over parameters, e.g. '{customer_id}'."
    ),
) -> None:
    """Limit the runs of a deployment at once; excess runs follow the collision strategy."""
    chosen = validate_concurrency_limit(common.pick_limit(value, limit))
    if collision_strategy is not None:
        validate_strategy(collision_strategy)
    dep = common.client().set_deployment_concurrency_limit(
        name, chosen, collision_strategy=collision_strategy, concurrency_key=concurrency_key
    )
    typer.echo(f"Deployment {name}: concurrency limit {_limit_cell(dep)}")


@app.command("clear-concurrency-limit")
def clear_concurrency_limit(name: str = NameArg) -> None:
    """Remove a deployment's limit: its runs overlap again."""
    common.client().set_deployment_concurrency_limit(name, None)
    typer.echo(f"Deployment {name}: no concurrency limit (runs overlap)")
