"""slot holders and waiters record their node

A lease or waiter row names the node of its process (boot id and pid
namespace) so that a process can be judged dead by its pid only by another
process of the same node: a pid seen from another container or another boot
means nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=100), nullable=True))
    with op.batch_alter_table("waiters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("waiters", schema=None) as batch_op:
        batch_op.drop_column("node")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_column("node")
