"""``headway deploy path/to/file.py:flow_fn --name N --pool P ...``: register a deployment."""

from __future__ import annotations

from pathlib import Path

import typer

from headway.cli import _deploying as common


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
        None, "--concurrency-limit", help="Runs of the deployment at once (default: no limit)."
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
) -> None:
    """Register a deployment of a flow for the workers of a pool."""
    from headway.core.deployments import (
        parse_entrypoint,
        validate_concurrency_limit,
        validate_strategy,
    )
    from headway.deployments.deploy import build_spec, schedules_from
    from headway.exceptions import ValidationError

    # Everything that can be checked without the user's code is checked first.
    path_text, attr = parse_entrypoint(entrypoint)
    if concurrency_limit is not None:
        validate_concurrency_limit(concurrency_limit)
    if collision_strategy is not None:
        validate_strategy(collision_strategy)
    schedules_from(
        cron=cron, interval=interval, anchor_date=anchor_date, rrule=rrule, timezone=timezone
    )
    defaults = common.params(param)
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise ValidationError(f"no such file: {path_text}")
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
        entrypoint=f"{path}:{attr}",
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
    )
    dep = client.apply_deployment(spec)
    typer.echo(
        f"Deployment {dep.full_name!r} registered on pool {dep.work_pool!r}"
        f" (queue {dep.work_queue!r}); start a worker with: headway worker start --pool {pool}"
    )
