"""Alembic environment: runs the history against the URL it is given."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from headway.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    """Run migrations on a live connection (passed in, or made from the URL)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copy-and-move
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
