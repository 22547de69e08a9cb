"""``headway work-queue``: the queues of a work pool (priority, limit, pause)."""

from __future__ import annotations

import typer

from headway.cli import _deploying as common
from headway.cli.output import check_output_format, emit_json

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "work-queue"

app = typer.Typer(
    help="Work queues of a pool: higher priority is claimed first. New queues are unlimited.",
    no_args_is_help=True,
)

QueueArg = typer.Argument(..., help="The queue's name.")
PoolOpt = typer.Option(..., "--pool", help="The work pool the queue belongs to.")


@app.command("create")
def create(
    name: str = QueueArg,
    pool: str = PoolOpt,
    limit: int | None = typer.Option(
        None, "--limit", "--concurrency-limit", help="Cap on its PENDING and RUNNING runs."
    ),
    priority: int = typer.Option(0, "--priority", help="Higher is claimed first (default 0)."),
) -> None:
    """Create a queue in a pool."""
    queue = common.client().create_work_queue(
        pool, name, priority=priority, concurrency_limit=limit
    )
    typer.echo(
        f"Created work queue {queue.name!r} in pool {pool!r} (id {queue.id}; priority"
        f" {queue.priority}, concurrency limit: {common.limit_text(queue.concurrency_limit)})"
    )


@app.command("ls")
def ls(
    pool: str | None = typer.Option(None, "--pool", help="Only the queues of this pool."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """List queues."""
    check_output_format(output)
    queues = common.client().list_work_queues(pool)
    if output == "json":
        emit_json(queues)
        return
    from rich.table import Table

    table = Table(title="work queues")
    for column in (
        "pool",
        "queue",
        "priority",
        "concurrency limit",
        "running",
        "waiting",
        "paused",
    ):
        table.add_column(column)
    for q in queues:
        table.add_row(
            q.pool, q.name, str(q.priority), common.limit_text(q.concurrency_limit),
            str(q.running), str(q.waiting), "yes" if q.paused else "no",
        )  # fmt: skip
    common.console().print(table)


@app.command("inspect")
def inspect(
    name: str = QueueArg,
    pool: str = PoolOpt,
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Show a queue."""
    check_output_format(output)
    q = common.client().read_work_queue(pool, name)
    if output == "json":
        emit_json(q)
        return
    con = common.console()
    con.print(f"[bold]{q.pool}/{q.name}[/bold]{'  PAUSED' if q.paused else ''}")
    for label, value in (
        ("id", q.id),
        ("priority", q.priority),
        ("concurrency limit", common.limit_text(q.concurrency_limit)),
        ("running", q.running),
        ("waiting", q.waiting),
        ("created", common.when(q.created)),
        ("updated", common.when(q.updated)),
    ):
        con.print(f"  {label:<18} {value}", highlight=False)


@app.command("set-concurrency-limit", context_settings={"ignore_unknown_options": True})
def set_concurrency_limit(
    name: str = QueueArg,
    value: int | None = typer.Argument(None, metavar="[N]", help="The limit (or use --limit)."),
    pool: str = PoolOpt,
    limit: int | None = typer.Option(None, "--limit", help="Cap on PENDING and RUNNING runs."),
) -> None:
    """Cap the queue's PENDING and RUNNING runs (live)."""
    q = common.client().set_work_queue_concurrency_limit(
        pool, name, common.pick_limit(value, limit)
    )
    typer.echo(
        f"Work queue {pool}/{name}: concurrency limit {common.limit_text(q.concurrency_limit)}"
    )


@app.command("clear-concurrency-limit")
def clear_concurrency_limit(name: str = QueueArg, pool: str = PoolOpt) -> None:
    """Remove the queue's limit."""
    common.client().set_work_queue_concurrency_limit(pool, name, None)
    typer.echo(f"Work queue {pool}/{name}: concurrency limit unlimited")


@app.command("set-priority")
def set_priority(
    name: str = QueueArg,
    priority: int = typer.Argument(..., help="Higher is claimed first."),
    pool: str = PoolOpt,
) -> None:
    """Change a queue's priority."""
    common.client().update_work_queue(pool, name, priority=priority)
    typer.echo(f"Work queue {pool}/{name}: priority {priority}")


@app.command("pause")
def pause(name: str = QueueArg, pool: str = PoolOpt) -> None:
    """Pause a queue: workers claim nothing from it."""
    common.client().update_work_queue(pool, name, paused=True)
    typer.echo(f"Paused work queue {pool}/{name}")


@app.command("resume")
def resume(name: str = QueueArg, pool: str = PoolOpt) -> None:
    """Resume a queue."""
    common.client().update_work_queue(pool, name, paused=False)
    typer.echo(f"Resumed work queue {pool}/{name}")


@app.command("delete")
def delete(name: str = QueueArg, pool: str = PoolOpt) -> None:
    """Delete a queue (not 'default'; refused while deployments use it)."""
    common.client().delete_work_queue(pool, name)
    typer.echo(f"Deleted work queue {pool}/{name}")
