"""``headway config``: every effective setting, its source, and the default concurrency."""

from __future__ import annotations

import json

import typer

from headway.cli.output import check_output_format
from headway.settings import describe, get_settings

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).


def config(
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Show each effective setting, where it came from, and the default concurrency."""
    check_output_format(output)
    settings = get_settings()
    views = describe(settings)
    concurrency = {
        "flow_runs": "unlimited: nothing is limited unless a limit is configured",
        "runs_per_worker": settings.worker_limit,
        "task_runner": "ThreadPoolTaskRunner",
        "task_runner_max_workers": settings.task_runner_max_workers,
        "store": "server at " + settings.api_url
        if settings.api_url
        else f"embedded at {settings.home / 'headway.db'}"
        if not settings.database_url
        else "direct database connection",
    }
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "settings": [
                        {"name": v.env, "value": v.value, "source": v.source, "doc": v.doc}
                        for v in views
                    ],
                    "default_concurrency": concurrency,
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="headway settings")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for v in views:
        table.add_row(v.env, v.value, v.source)
    console = Console()
    console.print(table)
    console.print(
        "Default concurrency: flow runs are [bold]unlimited[/bold] unless a limit is"
        " configured (global, tag, work pool, queue or deployment limit)."
    )
    console.print(
        f"Each worker runs at most {settings.worker_limit} flow runs at once and claims no"
        " more than it has room for (headway worker start --limit, HEADWAY_WORKER_LIMIT)."
    )
    console.print(
        f"Default task runner: ThreadPoolTaskRunner with {settings.task_runner_max_workers}"
        " worker threads (HEADWAY_TASK_RUNNER_MAX_WORKERS)."
    )
    console.print(f"Store: {concurrency['store']}")
