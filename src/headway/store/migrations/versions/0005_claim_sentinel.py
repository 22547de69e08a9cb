"""flow runs: ``blocked_on`` is '' (not NULL) when a run waits on no limit

An equality on '' lets PostgreSQL walk the claim index in scheduled-time order
(``IS NULL`` is an index condition there but not an ordered one), so reading
the oldest due runs of a queue stays a bounded scan however many are scheduled.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE flow_runs SET blocked_on = '' WHERE blocked_on IS NULL")
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "blocked_on",
            existing_type=sa.String(length=300),
            nullable=False,
            server_default="",
        )


def downgrade() -> None:
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "blocked_on",
            existing_type=sa.String(length=300),
            nullable=True,
            server_default=None,
        )
    op.execute("UPDATE flow_runs SET blocked_on = NULL WHERE blocked_on = ''")
