"""``headway deploy path/to/file.py:flow_fn --name N --pool P ...``: register a deployment."""

from __future__ import annotations

from pathlib import Path

import typer

from headway.cli import _deploying as common
from headway.core.deployments import (
    parse_entrypoint,
    validate_code_source,
    validate_concurrency_limit,
    validate_strategy,
)
from headway.exceptions import ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).


def deploy(
    entrypoint: str = typer.Argument(..., help="path/to/file.py:flow_function"),
    name: str = typer.Option(..., "--name", "-n", help="The deployment's name."),
    pool: str = typer.Option(..., "--pool", "-p", help="The work pool its runs go to."),
    queue: str | None = typer.Option(
        None, "--queue", "-q", help="The pool's queue (default: default)."
    ),
    cron: str | None = typer.Option(None, "--cron", help="A cron schedule, e.g. '0 * * * *'."),
    interval: str | None = typer.Option(
        None, "--interval", help="An interval: 30, 30s, 5m, 1h, 1d (1 ms to 100 years)."
    ),
    anchor_date: str | None = typer.Option(
        None, "--anchor-date", help="The interval's anchor (ISO 8601)."
    ),
    rrule: str | None = typer.Option(None, "--rrule", help="An iCalendar RRULE."),
    timezone: str | None = typer.Option(
        None, "--timezone", help="IANA timezone of the schedule (default UTC)."
    ),
    param: list[str] | None = typer.Option(
        None, "--param", help="A default parameter, name=value (value as JSON if it parses)."
    ),
    concurrency_limit: int | None = typer.Option(
        None,
        "--concurrency-limit",
        "-cl",
        help="Runs of the deployment at once (default: no limit).",
    ),
    collision_strategy: str | None = typer.Option(
        None, "--collision-strategy", help="ENQUEUE (default), CANCEL_NEW or CANCEL_IN_PROGRESS."
    ),
    concurrency_key: str | None = typer.Option(
        None, "--concurrency-key", help="Limit per key: a template such as '{customer_id}'."
    ),
    tag: list[str] | None = typer.Option(None, "--tag", help="A tag (repeatable)."),
    paused: bool = typer.Option(False, "--paused", help="Create it with its schedules paused."),
    description: str | None = typer.Option(None, "--description", help="What it does."),
    project_root: str | None = typer.Option(
        None,
        "--project-root",
        help="The directory the entrypoint is stored relative to, which workers run in"
        " (default: this directory).",
    ),
    code_repository: str | None = typer.Option(
        None,
        "--code-repository",
        help="A git repository (URL or path) workers check out before each run; its root"
        " is the project root (default: the root of the checkout you deploy from).",
    ),
    code_ref: str | None = typer.Option(
        None, "--code-ref", help="The repository's branch, tag or commit (default: its HEAD)."
    ),
) -> None:
    """Register a deployment of a flow for the workers of a pool."""
    from headway.deployments.deploy import (
        build_spec,
        git_toplevel,
        relative_to_root,
        schedules_from,
    )

    # Everything that can be checked without the user's code is checked first.
    path_text, attr = parse_entrypoint(entrypoint)
    if concurrency_limit is not None:
        validate_concurrency_limit(concurrency_limit)
    if collision_strategy is not None:
        validate_strategy(collision_strategy)
        if concurrency_limit is None:
            # As in Prefect: a strategy alone is not an error, it just has nothing to do.
            typer.echo(
                "warning: --collision-strategy is ignored without --concurrency-limit",
                err=True,
            )
            collision_strategy = None
    schedules_from(
        cron=cron, interval=interval, anchor_date=anchor_date, rrule=rrule, timezone=timezone
    )
    validate_code_source(code_repository, code_ref)
    defaults = common.params(param)
    root = Path(project_root or ".").expanduser().resolve()
    if project_root is not None and not root.is_dir():
        raise ValidationError(f"--project-root: no such directory: {project_root}")
    if project_root is None and code_repository is not None:
        # Workers resolve the entrypoint against the repository's root: deploying
        # from a subdirectory of a checkout must not make it relative to that.
        top = git_toplevel(root)
        if top is not None:
            path_text = str((root / Path(path_text).expanduser()).resolve())
            root = top.resolve()
    path = (root / Path(path_text).expanduser()).resolve()
    if not path.is_file():
        raise ValidationError(f"no such file: {path}")
    stored = relative_to_root(path, root)
    if stored is None:
        # Workers resolve a relative entrypoint against their own directory; a file
        # outside the project can only be named by its absolute path, which runs
        # only on machines that have that very path.
        if project_root is not None or code_repository is not None:
            raise ValidationError(
                f"{path} is outside the project root {root}; pass the project's directory"
                " as --project-root"
            )
        stored = str(path)
    client = common.client()
    client.read_work_pool(pool)  # unknown pool: one clear line, exit 2, before loading code
    from headway.worker.execute import load_flow

    try:
        flow = load_flow(f"{path}:{attr}")
    except Exception as exc:
        raise ValidationError(f"cannot load {entrypoint}: {type(exc).__name__}: {exc}") from None
    spec = build_spec(
        flow,
        name=name,
        work_pool_name=pool,
        work_queue_name=queue,
        entrypoint=f"{stored}:{attr}",
        parameters=defaults,
        concurrency_limit=concurrency_limit,
        collision_strategy=collision_strategy,
        concurrency_key=concurrency_key,
        tags=tag or (),
        paused=paused,
        description=description,
        cron=cron,
        interval=interval,
        anchor_date=anchor_date,
        rrule=rrule,
        timezone=timezone,
        code_repository=code_repository,
        code_ref=code_ref,
    )
    dep = client.apply_deployment(spec)
    if Path(stored).is_absolute():
        typer.echo(
            f"warning: {path} is outside this directory, so its absolute path is stored and"
            " it runs only where that path exists; run headway deploy in the project's"
            " directory (or pass --project-root) to run it anywhere",
            err=True,
        )
    typer.echo(
        f"Deployment {dep.full_name!r} ({dep.id}) registered on pool {dep.work_pool!r}"
        f" (queue {dep.work_queue!r}); start a worker with: headway worker start --pool {pool}"
    )
    typer.echo(f"Start a run of it with: headway deployment run '{dep.full_name}'")
