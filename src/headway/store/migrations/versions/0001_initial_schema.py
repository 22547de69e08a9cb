"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("limit_name", sa.String(length=300), nullable=True),
        sa.Column("slots", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_limit", ["limit_name", "id"], unique=False)
        batch_op.create_index("ix_events_run", ["run_id", "id"], unique=False)
        batch_op.create_index("ix_events_timestamp", ["timestamp"], unique=False)

    op.create_table(
        "flow_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("flow_name", sa.String(length=200), nullable=False),
        sa.Column("deployment", sa.String(length=401), nullable=True),
        sa.Column("parent_task_run_id", sa.String(length=36), nullable=True),
        sa.Column("parameters", sa.Text(), server_default="{}", nullable=False),
        sa.Column("tags", sa.Text(), server_default="[]", nullable=False),
        sa.Column("state_type", sa.String(length=20), nullable=False),
        sa.Column("state_name", sa.String(length=100), nullable=False),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column("state_timestamp", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expected_start_time", sa.Float(), nullable=True),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("run_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("work_pool", sa.String(length=200), nullable=True),
        sa.Column("work_queue", sa.String(length=200), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.create_index("ix_flow_runs_created", ["created"], unique=False)
        batch_op.create_index("ix_flow_runs_deployment", ["deployment", "created"], unique=False)
        batch_op.create_index("ix_flow_runs_state", ["state_type", "created"], unique=False)

    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(length=36), nullable=False),
        sa.Column("limit_name", sa.String(length=300), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("holder_kind", sa.String(length=20), nullable=False),
        sa.Column("holder_id", sa.String(length=100), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("proc_start", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("lease_id", "limit_name", name="pk_leases"),
    )
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.create_index("ix_leases_expires", ["expires"], unique=False)
        batch_op.create_index("ix_leases_limit", ["limit_name"], unique=False)

    op.create_table(
        "limits",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("slot_limit", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("active_slots", sa.Float(), server_default="0", nullable=False),
        sa.Column("slot_decay_per_second", sa.Float(), server_default="0", nullable=False),
        sa.Column("decayed_at", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.Column("grants", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("denials", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expiries", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_wait_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("total_hold_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("releases", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("task_run_id", sa.String(length=36), nullable=True),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("logger", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index("ix_logs_flow_run", ["flow_run_id", "id"], unique=False)

    op.create_table(
        "sequences",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "states",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("run_kind", sa.String(length=4), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("states", schema=None) as batch_op:
        batch_op.create_index("ix_states_run", ["run_id", "id"], unique=False)

    op.create_table(
        "task_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("task_key", sa.String(length=400), nullable=False),
        sa.Column("tags", sa.Text(), server_default="[]", nullable=False),
        sa.Column("state_type", sa.String(length=20), nullable=False),
        sa.Column("state_name", sa.String(length=100), nullable=False),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column("state_timestamp", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("run_count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index("ix_task_runs_flow_run", ["flow_run_id", "created"], unique=False)

    op.create_table(
        "waiters",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("limit_name", sa.String(length=300), nullable=False),
        sa.Column("waiter_id", sa.String(length=36), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("holder_kind", sa.String(length=20), nullable=False),
        sa.Column("holder_id", sa.String(length=100), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("proc_start", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("wake_address", sa.String(length=300), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("expires", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("waiter_id", "limit_name", name="pk_waiters"),
    )
    with op.batch_alter_table("waiters", schema=None) as batch_op:
        batch_op.create_index("ix_waiters_expires", ["expires"], unique=False)
        batch_op.create_index("ix_waiters_order", ["limit_name", "priority", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("waiters", schema=None) as batch_op:
        batch_op.drop_index("ix_waiters_order")
        batch_op.drop_index("ix_waiters_expires")

    op.drop_table("waiters")
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_flow_run")

    op.drop_table("task_runs")
    with op.batch_alter_table("states", schema=None) as batch_op:
        batch_op.drop_index("ix_states_run")

    op.drop_table("states")
    op.drop_table("sequences")
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index("ix_logs_flow_run")

    op.drop_table("logs")
    op.drop_table("limits")
    with op.batch_alter_table("leases", schema=None) as batch_op:
        batch_op.drop_index("ix_leases_limit")
        batch_op.drop_index("ix_leases_expires")

    op.drop_table("leases")
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_runs_state")
        batch_op.drop_index("ix_flow_runs_deployment")
        batch_op.drop_index("ix_flow_runs_created")

    op.drop_table("flow_runs")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_timestamp")
        batch_op.drop_index("ix_events_run")
        batch_op.drop_index("ix_events_limit")

    op.drop_table("events")
