"""deployments: ``code_repository`` and ``code_ref``, where workers get a deployment's code

A deployment may name a git repository (and a branch, tag or commit) that each
worker checks out into a cache before a run; its entrypoint is then relative to
the repository's root. Existing deployments have neither and keep running from
their entrypoint as stored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_repository", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("code_ref", sa.String(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("code_ref")
        batch_op.drop_column("code_repository")
