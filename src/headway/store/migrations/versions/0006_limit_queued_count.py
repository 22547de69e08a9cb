"""limits: ``queued``, how many waiter rows each limit has

Kept in step by every statement that adds or removes waiters (in the same
transaction, under the limit's row lock), and re-counted by the sweeper. It
lets an uncontended acquire and a release on PostgreSQL be one statement each:
a plain ``UPDATE ... WHERE queued = 0`` is re-checked on the newest row
version by PostgreSQL, where a ``NOT EXISTS`` over the waiters table would see
only the statement's snapshot.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE limits SET queued = (SELECT COUNT(*) FROM waiters WHERE"
        " waiters.limit_name = limits.name)"
    )


def downgrade() -> None:
    with op.batch_alter_table("limits", schema=None) as batch_op:
        batch_op.drop_column("queued")
