"""``headway db``: migrate the store's schema, or reset it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from headway.exceptions import ValidationError
from headway.settings import _mask, get_settings

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

if TYPE_CHECKING:
    from headway.store.db import Database

NAME = "db"

app = typer.Typer(help="Manage the store's schema (SQLite or PostgreSQL).", no_args_is_help=True)


def _database() -> Database:
    from headway.store.db import Database

    settings = get_settings()
    return Database(
        settings.effective_database_url,
        settings.store_busy_timeout_seconds,
        settings.database_pool_size,
    )


@app.command()
def upgrade() -> None:
    """Bring the schema to the newest revision (servers also do this at start)."""
    from headway.store.migrate import current_revision, ensure_schema

    db = _database()
    try:
        before = current_revision(db)
        ran = ensure_schema(db)
        after = current_revision(db)
    finally:
        db.close()
    where = _mask(db.url)
    if ran:
        typer.echo(f"upgraded {where} from {before or 'an empty database'} to {after}")
    else:
        typer.echo(f"{where} is already at {after}")


@app.command()
def reset(
    yes: bool = typer.Option(False, "--yes", help="Confirm: every run, limit and log is deleted."),
) -> None:
    """Drop every table and build the schema anew. Needs --yes."""
    if not yes:
        raise ValidationError("reset deletes every run, limit and log: pass --yes to confirm")
    from headway.store.migrate import current_revision, ensure_schema, reset

    db = _database()
    try:
        if current_revision(db) is None:
            ensure_schema(db)
        else:
            reset(db)
        revision = current_revision(db)
    finally:
        db.close()
    typer.echo(f"reset {_mask(db.url)}: empty schema at {revision}")
