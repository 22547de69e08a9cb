"""events carry seconds; histograms; an index of flow-run state changes by time

Events gain ``seconds`` (how long a slot was waited for or held, a claim's
latency), so "what did this run wait for, and how long" is read back exactly.
``histograms`` holds bucket counters (slot wait times per limit, claim
latency per pool) that only ever grow, as Prometheus histograms require. The
partial index on ``states`` lets the event feed read flow-run state changes
by time without touching the (many more) task-run states.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seconds", sa.Float(), nullable=True))
    op.create_table(
        "histograms",
        sa.Column("metric", sa.String(length=50), nullable=False),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("le", sa.Float(), nullable=False),
        sa.Column("count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total", sa.Float(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("metric", "label", "le", name="pk_histograms"),
    )
    op.create_index(
        "ix_states_flow_time",
        "states",
        ["timestamp"],
        unique=False,
        sqlite_where=sa.text("run_kind = 'flow'"),
        postgresql_where=sa.text("run_kind = 'flow'"),
    )


def downgrade() -> None:
    op.drop_index("ix_states_flow_time", table_name="states")
    op.drop_table("histograms")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("seconds")
