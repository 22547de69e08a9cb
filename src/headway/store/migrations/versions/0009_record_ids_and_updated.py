"""limits and work pools: a stable ``id``; work pools, queues and flow runs: ``updated``

Every record read with ``-o json`` carries an ``id`` and ``created``/``updated``
times, as Prefect's objects do. Limits and work pools were keyed by their name
alone: each gets a UUID here (existing rows too), unique. ``updated`` starts as
``created`` (a flow run's as its last state change, if later); from now on every
write that changes the record sets it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _fill_ids(table: str, key: str) -> None:
    bind = op.get_bind()
    keys = [r[0] for r in bind.execute(sa.text(f"SELECT {key} FROM {table} WHERE id IS NULL"))]
    for value in keys:
        bind.execute(
            sa.text(f"UPDATE {table} SET id = :id WHERE {key} = :key"),
            {"id": str(uuid.uuid4()), "key": value},
        )


def upgrade() -> None:
    with op.batch_alter_table("limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id", sa.String(36), nullable=True))
    _fill_ids("limits", "name")
    with op.batch_alter_table("limits", schema=None) as batch_op:
        batch_op.alter_column("id", existing_type=sa.String(36), nullable=False)
    op.create_index("ix_limits_id", "limits", ["id"], unique=True)

    with op.batch_alter_table("work_pools", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id", sa.String(36), nullable=True))
        batch_op.add_column(sa.Column("updated", sa.Float(), nullable=True))
    _fill_ids("work_pools", "name")
    op.execute("UPDATE work_pools SET updated = created")
    with op.batch_alter_table("work_pools", schema=None) as batch_op:
        batch_op.alter_column("id", existing_type=sa.String(36), nullable=False)
        batch_op.alter_column("updated", existing_type=sa.Float(), nullable=False)
    op.create_index("ix_work_pools_id", "work_pools", ["id"], unique=True)

    with op.batch_alter_table("work_queues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated", sa.Float(), nullable=True))
    op.execute("UPDATE work_queues SET updated = created")
    with op.batch_alter_table("work_queues", schema=None) as batch_op:
        batch_op.alter_column("updated", existing_type=sa.Float(), nullable=False)

    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated", sa.Float(), nullable=True))
    op.execute(
        "UPDATE flow_runs SET updated = CASE WHEN state_timestamp > created"
        " THEN state_timestamp ELSE created END"
    )
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.alter_column("updated", existing_type=sa.Float(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.drop_column("updated")
    with op.batch_alter_table("work_queues", schema=None) as batch_op:
        batch_op.drop_column("updated")
    op.drop_index("ix_work_pools_id", table_name="work_pools")
    with op.batch_alter_table("work_pools", schema=None) as batch_op:
        batch_op.drop_column("updated")
        batch_op.drop_column("id")
    op.drop_index("ix_limits_id", table_name="limits")
    with op.batch_alter_table("limits", schema=None) as batch_op:
        batch_op.drop_column("id")
