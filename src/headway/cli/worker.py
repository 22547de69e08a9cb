"""``headway worker``: start a worker on a pool; list workers."""

from __future__ import annotations

import os
import sys

import typer

from headway.cli import _deploying as common
from headway.cli.output import check_output_format, emit_json
from headway.exceptions import ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "worker"

app = typer.Typer(help="Workers: claim runs from a pool and run each in a subprocess.",
                  no_args_is_help=True)  # fmt: skip


@app.command("start")
def start(
    pool: str = typer.Option(..., "--pool", help="The work pool to take runs from."),
    queue: list[str] | None = typer.Option(
        None, "--queue", "-q", help="Only these queues of the pool (repeatable)."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        help="Most runs this worker runs at once; it claims no more than it has room for"
        " (default HEADWAY_WORKER_LIMIT, 5).",
    ),
    name: str | None = typer.Option(None, "--name", help="The worker's name (default host-pid)."),
    cancel_grace: float = typer.Option(
        10.0, "--cancel-grace", help="Seconds a cancelled run has after SIGTERM before SIGKILL."
    ),
    drain_seconds: float | None = typer.Option(
        None,
        "--drain-seconds",
        help="On SIGTERM or Ctrl-C, how long the runs going may finish before they are"
        " cancelled (default: until they end).",
    ),
    working_dir: str | None = typer.Option(
        None,
        "--working-dir",
        help="The directory runs start in, which deployments' entrypoints are relative to"
        " (default: this directory).",
    ),
    standby: bool = typer.Option(
        True,
        "--standby/--no-standby",
        help="Keep one run process started ahead, so a run starts without waiting for Python.",
    ),
) -> None:
    """Run a worker until Ctrl-C or SIGTERM.

    The first signal stops claiming and lets the runs going finish (for
    --drain-seconds at most); a second one cancels them (SIGTERM to each run,
    SIGKILL after --cancel-grace; they end CANCELLED); a third kills them at once.
    """
    from headway.worker import Worker

    if limit is not None and limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    if cancel_grace < 0:
        raise ValidationError(f"--cancel-grace must be at least 0, got {cancel_grace}")
    if drain_seconds is not None and not drain_seconds >= 0:
        raise ValidationError(f"--drain-seconds must be at least 0, got {drain_seconds}")
    if working_dir is not None and not os.path.isdir(working_dir):
        raise ValidationError(f"--working-dir: no such directory: {working_dir}")
    client = common.client()
    if limit is None:
        # A worker without a cap would claim a whole burst and leave its peers idle.
        limit = client.settings.worker_limit
    pool_record = client.read_work_pool(pool)  # unknown pool: one clear line, exit 2
    known = {q.name for q in pool_record.queues}
    for q in queue or []:
        if q not in known:
            raise ValidationError(
                f"work pool {pool!r} has no queue named {q!r};"
                f" its queues: {', '.join(sorted(known))}"
            )
    worker = Worker(
        pool=pool,
        queues=queue or (),
        limit=limit,
        name=name,
        client=client,
        cancel_grace_seconds=cancel_grace,
        drain_seconds=drain_seconds,
        echo=sys.stdout,
        standby=standby,
        working_dir=working_dir,
    )
    typer.echo(
        f"Worker {worker.name!r} started on pool {pool!r}"
        + (f" (queues: {', '.join(queue)})" if queue else "")
        + (f", at most {limit} run(s) at once" if limit else "")
        + "; press Ctrl-C to stop (twice to cancel its runs)"
    )
    worker.run()
    typer.echo(f"Worker {worker.name!r} stopped")


@app.command("ls")
def ls(
    pool: str | None = typer.Option(None, "--pool", help="Only workers of this pool."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """List workers, most recently heard from first."""
    check_output_format(output)
    workers = common.client().list_workers(pool)
    if output == "json":
        emit_json(workers)
        return
    from rich.table import Table

    table = Table(title="workers")
    for column in ("worker", "pool", "host", "pid", "runs", "last heartbeat", "online"):
        table.add_column(column)
    for w in workers:
        table.add_row(
            w.name, w.pool or "(serve)", w.host or "-", str(w.pid or "-"), str(w.running),
            common.when(w.last_heartbeat), "yes" if w.online else "no",
        )  # fmt: skip
    common.console().print(table)
