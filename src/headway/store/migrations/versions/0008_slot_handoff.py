"""waiters: ``mode`` and ``lease_seconds``; ``handoffs``: grants made for a waiter

Direct handoff (store/slots/handoff.py): whoever frees slots grants them to the head of
the queue in the same transaction, creating the waiter's lease from what its
row carries (holder and process were there already; the mode and lease length
are added here). The grant waits in ``handoffs`` until the waiter takes it, or
gives it back if it cancels first. A row left by an old version (no lease
length) is never handed off: it is woken to retry, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("waiters", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mode", sa.String(20), nullable=False, server_default="concurrency")
        )
        batch_op.add_column(sa.Column("lease_seconds", sa.Float(), nullable=True))
    op.create_table(
        "handoffs",
        sa.Column("waiter_id", sa.String(36), nullable=False),
        sa.Column("lease_id", sa.String(36), nullable=True),
        sa.Column("names", sa.Text(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("lease_seconds", sa.Float(), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("waited", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("waiter_id", name="pk_handoffs"),
    )
    op.create_index("ix_handoffs_expires", "handoffs", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_handoffs_expires", table_name="handoffs")
    op.drop_table("handoffs")
    with op.batch_alter_table("waiters", schema=None) as batch_op:
        batch_op.drop_column("lease_seconds")
        batch_op.drop_column("mode")
