"""The declared schema, as SQLAlchemy Core tables.

Alembic's history (``migrations/``) builds this schema; a test checks that the
migrated database equals these declarations. Times are epoch seconds (float):
portable across SQLite and PostgreSQL and cheap to compare in SQL. Runtime
queries live in ``store.py`` and its siblings; this module is imported only by
migrations and tests, so the embedded hot path never pays for SQLAlchemy.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

flow_runs = Table(
    "flow_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("flow_name", String(200), nullable=False),
    Column("deployment", String(401), nullable=True),
    Column("parent_task_run_id", String(36), nullable=True),
    Column("parameters", Text, nullable=False, server_default="{}"),
    Column("tags", Text, nullable=False, server_default="[]"),
    Column("state_type", String(20), nullable=False),
    Column("state_name", String(100), nullable=False),
    Column("state_message", Text, nullable=True),
    Column("state_timestamp", Float, nullable=False),
    Column("created", Float, nullable=False),
    Column("expected_start_time", Float, nullable=True),
    Column("start_time", Float, nullable=True),
    Column("end_time", Float, nullable=True),
    Column("run_count", Integer, nullable=False, server_default="0"),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("work_pool", String(200), nullable=True),
    Column("work_queue", String(200), nullable=True),
    Column("pid", Integer, nullable=True),
    Column("host", String(255), nullable=True),
    # Deployment runs (migration 0003): the schedule time a scheduler created the
    # run for (unique per deployment), the deployment limit it waits on, its
    # concurrency key, and the slot lease and worker lease it holds once claimed.
    Column("scheduled_slot", Float, nullable=True),
    # The deployment limit a waiting run is set aside on; '' when none (migration 0005).
    Column("blocked_on", String(300), nullable=False, server_default=""),
    Column("concurrency_key", String(200), nullable=True),
    Column("lease_id", String(36), nullable=True),
    Column("lease_expires", Float, nullable=True),
    Column("worker_id", String(36), nullable=True),
    # When the record last changed (state, claim, what it waits on); migration 0009.
    Column("updated", Float, nullable=False),
)
Index("ix_flow_runs_created", flow_runs.c.created)
Index("ix_flow_runs_state", flow_runs.c.state_type, flow_runs.c.created)
Index("ix_flow_runs_deployment", flow_runs.c.deployment, flow_runs.c.created)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("flow_run_id", String(36), nullable=True),
    Column("name", String(200), nullable=False),
    Column("task_key", String(400), nullable=False),
    Column("tags", Text, nullable=False, server_default="[]"),
    Column("state_type", String(20), nullable=False),
    Column("state_name", String(100), nullable=False),
    Column("state_message", Text, nullable=True),
    Column("state_timestamp", Float, nullable=False),
    Column("created", Float, nullable=False),
    Column("start_time", Float, nullable=True),
    Column("end_time", Float, nullable=True),
    Column("run_count", Integer, nullable=False, server_default="0"),
)
Index("ix_task_runs_flow_run", task_runs.c.flow_run_id, task_runs.c.created)

states = Table(
    "states",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(36), nullable=False),
    Column("run_kind", String(4), nullable=False),
    Column("type", String(20), nullable=False),
    Column("name", String(100), nullable=False),
    Column("message", Text, nullable=True),
    Column("timestamp", Float, nullable=False),
)
Index("ix_states_run", states.c.run_id, states.c.id)

logs = Table(
    "logs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("flow_run_id", String(36), nullable=True),
    Column("task_run_id", String(36), nullable=True),
    Column("level", Integer, nullable=False),
    Column("logger", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Column("timestamp", Float, nullable=False),
)
Index("ix_logs_flow_run", logs.c.flow_run_id, logs.c.id)

limits = Table(
    "limits",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("slot_limit", Integer, nullable=False),
    Column("active", Boolean, nullable=False, server_default="1"),
    # Float so rate limits can decay continuously; plain limits stay whole.
    Column("active_slots", Float, nullable=False, server_default="0"),
    Column("slot_decay_per_second", Float, nullable=False, server_default="0"),
    Column("decayed_at", Float, nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("grants", BigInteger, nullable=False, server_default="0"),
    Column("denials", BigInteger, nullable=False, server_default="0"),
    Column("expiries", BigInteger, nullable=False, server_default="0"),
    Column("total_wait_seconds", Float, nullable=False, server_default="0"),
    # Sum of slot-seconds released, for average occupancy and start estimates.
    Column("total_hold_seconds", Float, nullable=False, server_default="0"),
    Column("releases", BigInteger, nullable=False, server_default="0"),
    # How many waiter rows name this limit (migration 0006); see store/slots/.
    Column("queued", Integer, nullable=False, server_default="0"),
    # A stable id besides the name (migration 0009), as Prefect's limits have.
    Column("id", String(36), nullable=False),
)
Index("ix_limits_id", limits.c.id, unique=True)

# One row per (lease, limit): a lease over several limits has several rows.
leases = Table(
    "leases",
    metadata,
    Column("lease_id", String(36), nullable=False),
    Column("limit_name", String(300), nullable=False),
    Column("slots", Integer, nullable=False),
    Column("holder_kind", String(20), nullable=False),
    Column("holder_id", String(100), nullable=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("proc_start", BigInteger, nullable=False, server_default="0"),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    # Boot id + pid namespace of the holder: only a process of the same node
    # may judge it dead by its pid (migration 0002).
    Column("node", String(100), nullable=True),
    PrimaryKeyConstraint("lease_id", "limit_name", name="pk_leases"),
)
Index("ix_leases_limit", leases.c.limit_name)
Index("ix_leases_expires", leases.c.expires)

# One row per (waiting request, limit); ``seq`` orders requests globally (FIFO).
waiters = Table(
    "waiters",
    metadata,
    Column("seq", BigInteger, nullable=False),
    Column("limit_name", String(300), nullable=False),
    Column("waiter_id", String(36), nullable=False),
    Column("slots", Integer, nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("holder_kind", String(20), nullable=False),
    Column("holder_id", String(100), nullable=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("proc_start", BigInteger, nullable=False, server_default="0"),
    Column("wake_address", String(300), nullable=True),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("node", String(100), nullable=True),
    # What a lease made for it needs (migration 0008): a release hands the slots
    # straight to the head of the queue (direct handoff, store/slots/handoff.py).
    Column("mode", String(20), nullable=False, server_default="concurrency"),
    Column("lease_seconds", Float, nullable=True),
    # Every name the request asked for (JSON), when its rows are on fewer (a name
    # not limited, or disabled, when it queued): a handoff decides on them all
    # (migration 0012). NULL when its rows name them all.
    Column("request_names", Text, nullable=True),
    PrimaryKeyConstraint("waiter_id", "limit_name", name="pk_waiters"),
)
Index("ix_waiters_order", waiters.c.limit_name, waiters.c.priority, waiters.c.seq)
Index("ix_waiters_expires", waiters.c.expires)

# A grant made for a waiting request by whoever freed the slots (migration 0008):
# the waiter takes it (and its lease) by its id, or gives it back if it cancels
# first. Forgotten at ``expires`` (its lease's expiry): a waiter that never came
# back has its lease reaped like any other.
handoffs = Table(
    "handoffs",
    metadata,
    Column("waiter_id", String(36), nullable=False),
    Column("lease_id", String(36), nullable=True),
    # The limits granted, as a JSON list (a rate grant holds no lease rows).
    Column("names", Text, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("mode", String(20), nullable=False),
    Column("lease_seconds", Float, nullable=True),
    Column("lease_expires", Float, nullable=True),
    Column("waited", Float, nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    PrimaryKeyConstraint("waiter_id", name="pk_handoffs"),
)
Index("ix_handoffs_expires", handoffs.c.expires)

# Monotonic counters shared by every process (waiter order).
sequences = Table(
    "sequences",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("timestamp", Float, nullable=False),
    Column("kind", String(50), nullable=False),
    Column("run_id", String(36), nullable=True),
    Column("limit_name", String(300), nullable=True),
    Column("slots", Integer, nullable=True),
    Column("detail", Text, nullable=True),
    # How long a slot was waited for or held, or a claim's latency (migration 0004).
    Column("seconds", Float, nullable=True),
)
Index("ix_events_timestamp", events.c.timestamp)
Index("ix_events_run", events.c.run_id, events.c.id)
Index("ix_events_limit", events.c.limit_name, events.c.id)

# Flow-run state changes by time, for the event feed (task-run states are not indexed).
Index(
    "ix_states_flow_time",
    states.c.timestamp,
    sqlite_where=text("run_kind = 'flow'"),
    postgresql_where=text("run_kind = 'flow'"),
)

# Bucket counters of histograms (migration 0004): ``le`` is the bucket's upper bound,
# ``count`` the observations in (previous bound, le], ``total`` their sum. They only grow.
histograms = Table(
    "histograms",
    metadata,
    Column("metric", String(50), nullable=False),
    Column("label", String(300), nullable=False),
    Column("le", Float, nullable=False),
    Column("count", BigInteger, nullable=False, server_default="0"),
    Column("total", Float, nullable=False, server_default="0"),
    PrimaryKeyConstraint("metric", "label", "le", name="pk_histograms"),
)


# -- deployments, work pools, queues, workers (migration 0003) -------------------------
Index(
    "ix_flow_runs_schedule_slot",
    flow_runs.c.deployment,
    flow_runs.c.scheduled_slot,
    unique=True,
)
Index(
    "ix_flow_runs_claim",
    flow_runs.c.work_pool,
    flow_runs.c.work_queue,
    flow_runs.c.state_type,
    flow_runs.c.blocked_on,
    flow_runs.c.expected_start_time,
)
Index(
    "ix_flow_runs_blocked",
    flow_runs.c.blocked_on,
    flow_runs.c.priority,
    flow_runs.c.expected_start_time,
)
Index("ix_flow_runs_lease", flow_runs.c.lease_expires)
Index(
    "ix_flow_runs_late",
    flow_runs.c.state_type,
    flow_runs.c.state_name,
    flow_runs.c.expected_start_time,
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("full_name", String(401), nullable=False),
    Column("flow_name", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("entrypoint", Text, nullable=True),
    Column("parameters", Text, nullable=False, server_default="{}"),
    Column("parameter_schema", Text, nullable=True),
    Column("tags", Text, nullable=False, server_default="[]"),
    Column("work_pool", String(200), nullable=True),
    Column("work_queue", String(200), nullable=True),
    Column("paused", Boolean, nullable=False, server_default="0"),
    Column("concurrency_limit", Integer, nullable=True),
    Column("collision_strategy", String(30), nullable=False, server_default="ENQUEUE"),
    Column("concurrency_key", String(400), nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    # Where workers get the code: a git repository (and ref) to check out; NULL: the
    # worker's working directory (or the entrypoint's own absolute path).
    Column("code_repository", Text, nullable=True),
    Column("code_ref", String(400), nullable=True),
)
Index("ix_deployments_full_name", deployments.c.full_name, unique=True)
Index("ix_deployments_pool", deployments.c.work_pool)

deployment_schedules = Table(
    "deployment_schedules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("deployment_id", String(36), nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),
    Column("schedule", Text, nullable=False),
    Column("active", Boolean, nullable=False, server_default="1"),
)
Index("ix_deployment_schedules_deployment", deployment_schedules.c.deployment_id)

# Round-robin between the concurrency keys of a deployment: when each key was last served.
deployment_keys = Table(
    "deployment_keys",
    metadata,
    Column("deployment", String(401), nullable=False),
    Column("key", String(200), nullable=False),
    Column("last_claimed", Float, nullable=False),
    PrimaryKeyConstraint("deployment", "key", name="pk_deployment_keys"),
)

work_pools = Table(
    "work_pools",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("type", String(50), nullable=False, server_default="process"),
    Column("paused", Boolean, nullable=False, server_default="0"),
    Column("description", Text, nullable=False, server_default=""),
    Column("created", Float, nullable=False),
    # A stable id besides the name, and when the pool last changed (migration 0009).
    Column("id", String(36), nullable=False),
    Column("updated", Float, nullable=False),
)
Index("ix_work_pools_id", work_pools.c.id, unique=True)

work_queues = Table(
    "work_queues",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pool", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("paused", Boolean, nullable=False, server_default="0"),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
)
Index("ix_work_queues_pool_name", work_queues.c.pool, work_queues.c.name, unique=True)

workers = Table(
    "workers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pool", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("pid", Integer, nullable=True),
    Column("host", String(255), nullable=True),
    # Where the worker's process listens for wake-ups (a slot freed, a run to cancel).
    Column("wake_address", String(300), nullable=True),
    Column("created", Float, nullable=False),
    Column("last_heartbeat", Float, nullable=False),
)
Index("ix_workers_pool_name", workers.c.pool, workers.c.name, unique=True)
