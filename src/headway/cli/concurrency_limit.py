"""``headway concurrency-limit``: task-tag limits (stored as the limit ``tag:<tag>``).

At most LIMIT task runs with tag TAG run at once, across all flows and
processes. The same engine as ``headway gcl``: only the naming differs.
"""

from __future__ import annotations

from typing import Any

import typer

from headway.cli.gcl import print_detail, print_limits
from headway.cli.output import check_output_format
from headway.core.limits import TAG_PREFIX, tag_limit_name

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "concurrency-limit"
#: Prefect's plural spelling, accepted and left out of the help.
ALIASES = ("concurrency-limits",)

app = typer.Typer(
    help="Task-tag concurrency limits: at most N task runs with a tag at once.",
    no_args_is_help=True,
)


def _client() -> Any:
    from headway.client.base import get_client

    return get_client()


@app.command()
def create(
    tag: str = typer.Argument(..., help="The task tag."),
    limit: int = typer.Argument(
        ..., help="Task runs with this tag allowed at once (0: they fail at once, never run)."
    ),
) -> None:
    """Limit how many task runs with TAG may run at once (a tag already limited: its new limit)."""
    from headway.exceptions import ObjectAlreadyExists

    client = _client()
    name = tag_limit_name(tag)
    try:
        created = client.create_limit(name, limit)
    except ObjectAlreadyExists:
        # As in Prefect: creating a tag's limit again sets it (holders keep their slots).
        updated = client.update_limit(name, limit=limit)
        typer.echo(f"Updated tag limit {tag!r}: {_meaning(updated.limit)}.")
        return
    typer.echo(f"Created tag limit {tag!r}: {_meaning(created.limit)}.")


def _meaning(limit: int) -> str:
    if limit == 0:
        # As in Prefect: waiting for a limit of 0 would never end.
        return "0, so task runs with this tag fail at once without running"
    return f"at most {limit} task run(s) at once"


@app.command("ls")
def list_limits(
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
    limit: int | None = typer.Option(None, "--limit", min=0, help="Show at most this many."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
) -> None:
    """List the tag limits (by tag)."""
    check_output_format(output)
    limits = _client().list_limits(prefix=TAG_PREFIX)[offset:]
    if limit is not None:
        limits = limits[:limit]
    print_limits(limits, output, title="task tag limits", first="tag")


@app.command()
def inspect(
    tag: str = typer.Argument(..., help="The task tag."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Show a tag limit with the task runs holding it and those waiting."""
    check_output_format(output)
    print_detail(_client().inspect_limit(tag_limit_name(tag)), output)


@app.command()
def reset(tag: str = typer.Argument(..., help="The task tag.")) -> None:
    """Free every slot of a tag limit (the runs holding them lose them)."""
    _client().reset_limit(tag_limit_name(tag))
    typer.echo(f"Reset tag limit {tag!r}: all slots free.")


@app.command()
def delete(
    tag: str = typer.Argument(..., help="The task tag."),
    force: bool = typer.Option(
        False, "--force", help="Delete even while task runs hold slots (they lose them)."
    ),
) -> None:
    """Delete a tag limit; refused while task runs hold it, unless --force."""
    _client().delete_limit(tag_limit_name(tag), force=force)
    typer.echo(f"Deleted tag limit {tag!r}.")
