"""The Typer application and its sub-commands (one module per noun)."""

from __future__ import annotations

import json
from typing import Any

import typer

from headway._version import headway_version
from headway.cli import config as config_cmd

app = typer.Typer(
    name="headway",
    help="headway: Python workflows with exact, prompt, crash-safe concurrency limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print headway's version."""
    typer.echo(headway_version())


app.command("config")(config_cmd.config)


def _deploy_command() -> None:
    # ``headway deploy FILE:FN ...`` is a verb of its own, not a noun group.
    from headway.cli.deploy import deploy

    app.command("deploy")(deploy)


_deploy_command()


def _observe_commands() -> None:
    # ``headway why RUN_ID`` and ``headway status`` are verbs of their own too.
    from headway.cli.status import status
    from headway.cli.why import why

    app.command("why")(why)
    app.command("status")(status)


_observe_commands()


def _register() -> None:
    # Each noun module exposes ``app`` (a Typer) and ``NAME``; modules missing
    # from a partial install are skipped, never half-registered.
    import importlib

    for module_name in _NOUNS:
        try:
            module = importlib.import_module(f"headway.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("headway.cli."):
                continue
            raise
        for name in getattr(module, "NAMES", None) or (module.NAME,):
            app.add_typer(module.app, name=name)


# Noun modules, in the order ``headway --help`` lists them.
_NOUNS: list[str] = [
    "flow_run",
    "gcl",
    "concurrency_limit",
    "deployment",
    "work_pool",
    "work_queue",
    "worker",
    "server",
    "db",
    "events",
    "concurrency",
]

_register()


def emit_json(value: Any) -> None:
    """Print a JSON document (records made JSON-ready first)."""
    from headway.core.models import to_jsonable

    typer.echo(json.dumps(to_jsonable(value), indent=2))
