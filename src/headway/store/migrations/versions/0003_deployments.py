"""deployments, schedules, work pools, queues, workers; claim columns on flow runs

Flow runs gain what claiming needs: the schedule time a scheduler created them
for (unique per deployment, so two schedulers never duplicate a run), the
deployment limit they wait on, their concurrency key, and the slot lease and
worker lease they hold once claimed. The claim index serves "due runs of this
queue, oldest first" in one range scan however many runs are scheduled ahead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scheduled_slot", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("blocked_on", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("concurrency_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("lease_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("lease_expires", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("worker_id", sa.String(length=36), nullable=True))
        batch_op.create_index(
            "ix_flow_runs_schedule_slot", ["deployment", "scheduled_slot"], unique=True
        )
        batch_op.create_index(
            "ix_flow_runs_claim",
            ["work_pool", "work_queue", "state_type", "blocked_on", "expected_start_time"],
            unique=False,
        )
        batch_op.create_index(
            "ix_flow_runs_blocked",
            ["blocked_on", "priority", "expected_start_time"],
            unique=False,
        )
        batch_op.create_index("ix_flow_runs_lease", ["lease_expires"], unique=False)
        batch_op.create_index(
            "ix_flow_runs_late", ["state_type", "state_name", "expected_start_time"], unique=False
        )

    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("full_name", sa.String(length=401), nullable=False),
        sa.Column("flow_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("entrypoint", sa.Text(), nullable=True),
        sa.Column("parameters", sa.Text(), server_default="{}", nullable=False),
        sa.Column("parameter_schema", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), server_default="[]", nullable=False),
        sa.Column("work_pool", sa.String(length=200), nullable=True),
        sa.Column("work_queue", sa.String(length=200), nullable=True),
        sa.Column("paused", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column(
            "collision_strategy", sa.String(length=30), server_default="ENQUEUE", nullable=False
        ),
        sa.Column("concurrency_key", sa.String(length=400), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index("ix_deployments_full_name", ["full_name"], unique=True)
        batch_op.create_index("ix_deployments_pool", ["work_pool"], unique=False)

    op.create_table(
        "deployment_schedules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("schedule", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployment_schedules", schema=None) as batch_op:
        batch_op.create_index("ix_deployment_schedules_deployment", ["deployment_id"], unique=False)

    op.create_table(
        "deployment_keys",
        sa.Column("deployment", sa.String(length=401), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("last_claimed", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("deployment", "key", name="pk_deployment_keys"),
    )

    op.create_table(
        "work_pools",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=50), server_default="process", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "work_queues",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pool", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("work_queues", schema=None) as batch_op:
        batch_op.create_index("ix_work_queues_pool_name", ["pool", "name"], unique=True)

    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pool", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("wake_address", sa.String(length=300), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("last_heartbeat", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index("ix_workers_pool_name", ["pool", "name"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index("ix_workers_pool_name")
    op.drop_table("workers")
    with op.batch_alter_table("work_queues", schema=None) as batch_op:
        batch_op.drop_index("ix_work_queues_pool_name")
    op.drop_table("work_queues")
    op.drop_table("work_pools")
    op.drop_table("deployment_keys")
    with op.batch_alter_table("deployment_schedules", schema=None) as batch_op:
        batch_op.drop_index("ix_deployment_schedules_deployment")
    op.drop_table("deployment_schedules")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_pool")
        batch_op.drop_index("ix_deployments_full_name")
    op.drop_table("deployments")
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_runs_late")
        batch_op.drop_index("ix_flow_runs_lease")
        batch_op.drop_index("ix_flow_runs_blocked")
        batch_op.drop_index("ix_flow_runs_claim")
        batch_op.drop_index("ix_flow_runs_schedule_slot")
        batch_op.drop_column("worker_id")
        batch_op.drop_column("lease_expires")
        batch_op.drop_column("lease_id")
        batch_op.drop_column("concurrency_key")
        batch_op.drop_column("blocked_on")
        batch_op.drop_column("scheduled_slot")
