"""``headway concurrency explain DEPLOYMENT``: a deployment's concurrency policy, layer by layer."""

from __future__ import annotations

from typing import Any

import typer

from headway.cli.output import check_output_format, emit_json
from headway.cli.why import client, console, fetching, slots

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "concurrency"

app = typer.Typer(
    help="How concurrency is limited: explain a deployment's policy layer by layer.",
    no_args_is_help=True,
)


def render(answer: Any) -> None:
    """The policy for people."""
    from rich.markup import escape
    from rich.table import Table

    out = console()
    out.print(f"[bold]Deployment {escape(answer.deployment)}[/bold]")
    table = Table(title="Concurrency policy, layer by layer", title_justify="left")
    for column in ("layer", "name", "limit", "taken", "waiting", "detail"):
        table.add_column(column)
    for layer in answer.layers:
        table.add_row(
            layer.layer,
            escape(layer.name or "-"),
            "unlimited" if layer.limit is None else str(layer.limit),
            "-" if layer.active_slots is None else slots(layer.active_slots),
            "-" if layer.waiting is None else str(layer.waiting),
            escape(layer.detail),
        )
    out.print(table)
    key = f", key {answer.concurrency_key!r}" if answer.concurrency_key else ""
    out.print(f"collision strategy: {answer.collision_strategy}{escape(key)}")
    out.print(f"runs now: {answer.active_runs} active, {answer.waiting_runs} awaiting a slot")
    out.print(
        f"[bold]When its schedule fires while a run is active[/bold]: {escape(answer.on_collision)}"
    )
    for note in answer.notes:
        out.print(f"note: {escape(note)}")


@app.command()
def explain(
    deployment: str = typer.Argument(..., help="The deployment: <flow-name>/<deployment-name>."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Explain a deployment's effective concurrency policy, layer by layer."""
    check_output_format(output)
    answer = fetching("Explaining...", lambda: client().explain_deployment(deployment))
    if output == "json":
        emit_json(answer)
        return
    render(answer)
