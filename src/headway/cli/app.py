"""The Typer application and its sub-commands (one module per noun).

Every command loads every CLI module (Typer registers them all), so what a
module imports at its top, ``headway --help`` and every command pay for. The
client (which loads the store or httpx), rich, the store's schema tools, the
deployments and the worker are imported inside the commands that use them.
"""

from __future__ import annotations

import importlib

import typer

from headway._version import headway_version
from headway.cli import config as config_cmd
from headway.cli.deploy import deploy
from headway.cli.status import status
from headway.cli.why import why

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


# ``headway deploy FILE:FN ...``, ``headway why RUN_ID`` and ``headway status`` are
# verbs of their own, not noun groups.
app.command("deploy")(deploy)
app.command("why")(why)
app.command("status")(status)


def _register() -> None:
    # Each noun module exposes ``app`` (a Typer) and ``NAME``; modules missing
    # from a partial install are skipped, never half-registered.
    for module_name in _NOUNS:
        try:
            module = importlib.import_module(f"headway.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("headway.cli."):
                continue
            raise
        for name in getattr(module, "NAMES", None) or (module.NAME,):
            app.add_typer(module.app, name=name)
        for alias in getattr(module, "ALIASES", ()):
            app.add_typer(module.app, name=alias, hidden=True)


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
