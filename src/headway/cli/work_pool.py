"""``headway work-pool``: create, list, inspect, limit, pause, resume, delete work pools."""

from __future__ import annotations

import typer

from headway.cli import _deploying as common
from headway.cli.output import check_output_format, emit_json

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "work-pool"
#: Prefect's plural spelling, accepted and left out of the help.
ALIASES = ("work-pools",)

app = typer.Typer(
    help="Work pools: where workers take runs from. New pools are unlimited.",
    no_args_is_help=True,
)

PoolArg = typer.Argument(..., help="The work pool's name.")


@app.command("create")
def create(
    name: str = PoolArg,
    concurrency_limit: int | None = typer.Option(
        None, "--concurrency-limit", "--limit", help="Cap on its PENDING and RUNNING runs."
    ),
    description: str = typer.Option("", "--description", help="What the pool is for."),
    pool_type: str = typer.Option(
        "process",
        "--type",
        "-t",
        help="The kind of worker that runs its runs: process (each run in a local"
        " subprocess), the only kind headway has.",
    ),
) -> None:
    """Create a work pool (with a 'default' queue)."""
    if pool_type != "process":
        from headway.exceptions import ValidationError

        raise ValidationError(
            f"work pool type {pool_type!r} is not supported: headway's workers run each flow"
            " run in a local subprocess; use --type process"
        )
    pool = common.client().create_work_pool(
        name, concurrency_limit=concurrency_limit, description=description
    )
    typer.echo(
        f"Created work pool {pool.name!r} (id {pool.id}; concurrency limit:"
        f" {common.limit_text(pool.concurrency_limit)})"
    )


@app.command("update")
def update(
    name: str = PoolArg,
    concurrency_limit: int | None = typer.Option(
        None, "--concurrency-limit", "--limit", help="New cap on its PENDING and RUNNING runs."
    ),
) -> None:
    """Change a pool's settings (live): its concurrency limit."""
    from headway.exceptions import ValidationError

    if concurrency_limit is None:
        raise ValidationError("nothing to update: give --concurrency-limit N")
    pool = common.client().set_work_pool_concurrency_limit(name, concurrency_limit)
    typer.echo(
        f"Updated work pool {name!r}: concurrency limit {common.limit_text(pool.concurrency_limit)}"
    )


@app.command("ls")
def ls(
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show each pool's type, description and creation."
    ),
) -> None:
    """List work pools with their limit and runs."""
    check_output_format(output)
    pools = common.client().list_work_pools()
    if output == "json":
        emit_json(pools)
        return
    from rich.table import Table

    table = Table(title="work pools")
    columns = ["name", "concurrency limit", "running", "waiting", "queues", "paused"]
    if verbose:
        columns += ["type", "id", "description", "created", "updated"]
    for column in columns:
        table.add_column(column)
    for pool in pools:
        row = [
            pool.name,
            common.limit_text(pool.concurrency_limit),
            str(pool.running),
            str(pool.waiting),
            ", ".join(q.name for q in pool.queues),
            "yes" if pool.paused else "no",
        ]
        if verbose:
            row += [pool.type, pool.id or "-", pool.description or "-"]
            row += [common.when(pool.created), common.when(pool.updated)]
        table.add_row(*row)
    common.console().print(table)


@app.command("inspect")
def inspect(
    name: str = PoolArg,
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Show a pool: its limit, running and waiting runs, queues and workers."""
    check_output_format(output)
    client = common.client()
    pool = client.read_work_pool(name)
    if output == "json":
        emit_json(pool)
        return
    con = common.console()
    con.print(f"[bold]{pool.name}[/bold]  ({pool.type}){'  PAUSED' if pool.paused else ''}")
    con.print(f"  id                 {pool.id or '-'}", highlight=False)
    con.print(f"  concurrency limit  {common.limit_text(pool.concurrency_limit)}", highlight=False)
    con.print(f"  running            {pool.running}", highlight=False)
    con.print(f"  waiting            {pool.waiting}", highlight=False)
    con.print(f"  created            {common.when(pool.created)}", highlight=False)
    con.print(f"  updated            {common.when(pool.updated)}", highlight=False)
    from rich.table import Table

    table = Table(title="queues")
    for column in ("queue", "priority", "concurrency limit", "running", "waiting", "paused"):
        table.add_column(column)
    for q in pool.queues:
        table.add_row(
            q.name,
            str(q.priority),
            common.limit_text(q.concurrency_limit),
            str(q.running),
            str(q.waiting),
            "yes" if q.paused else "no",
        )
    con.print(table)
    workers = client.list_workers(name)
    if workers:
        wt = Table(title="workers")
        for column in ("worker", "host", "pid", "runs", "last heartbeat", "online"):
            wt.add_column(column)
        for w in workers:
            wt.add_row(
                w.name, w.host or "-", str(w.pid or "-"), str(w.running),
                common.when(w.last_heartbeat), "yes" if w.online else "no",
            )  # fmt: skip
        con.print(wt)


@app.command("set-concurrency-limit", context_settings={"ignore_unknown_options": True})
def set_concurrency_limit(
    name: str = PoolArg,
    value: int | None = typer.Argument(None, metavar="[N]", help="The limit (or use --limit)."),
    limit: int | None = typer.Option(None, "--limit", help="Cap on PENDING and RUNNING runs."),
) -> None:
    """Cap the pool's PENDING and RUNNING runs (live; excess runs wait)."""
    pool = common.client().set_work_pool_concurrency_limit(name, common.pick_limit(value, limit))
    typer.echo(f"Work pool {name!r}: concurrency limit {common.limit_text(pool.concurrency_limit)}")


@app.command("clear-concurrency-limit")
def clear_concurrency_limit(name: str = PoolArg) -> None:
    """Remove the pool's limit (unlimited again)."""
    common.client().set_work_pool_concurrency_limit(name, None)
    typer.echo(f"Work pool {name!r}: concurrency limit unlimited")


@app.command("pause")
def pause(name: str = PoolArg) -> None:
    """Pause a pool: workers claim nothing from it."""
    common.client().update_work_pool(name, paused=True)
    typer.echo(f"Paused work pool {name!r}")


@app.command("resume")
def resume(name: str = PoolArg) -> None:
    """Resume a pool."""
    common.client().update_work_pool(name, paused=False)
    typer.echo(f"Resumed work pool {name!r}")


@app.command("delete")
def delete(name: str = PoolArg) -> None:
    """Delete a pool (refused while deployments use it)."""
    common.client().delete_work_pool(name)
    typer.echo(f"Deleted work pool {name!r}")
