"""The statements of flow runs, task runs, their states and logs, and run leases.

Run by ``store/runs.py`` (runs, states, logs) and ``store/run_leases.py`` (a
claimed run's lease, how it ends, who to wake). A statement that locks the row
it reads gets the dialect's row lock (``tx.dialect.for_update``) appended by the
part; an ``IN`` list's placeholders come from ``store/sql.py``'s ``in_list``.
"""

from __future__ import annotations

from collections.abc import Sequence

# -- Columns ------------------------------------------------------------------

#: A flow run's columns, in the order ``run_rows.flow_run_of`` reads them.
FLOW_COLUMNS = (
    "id, name, flow_name, deployment, parent_task_run_id, parameters, tags, state_type,"
    " state_name, state_message, state_timestamp, created, expected_start_time, start_time,"
    " end_time, run_count, priority, work_pool, work_queue, updated"
)
#: A task run's columns, in the order ``run_rows.task_run_of`` reads them.
TASK_COLUMNS = (
    "id, flow_run_id, name, task_key, tags, state_type, state_name, state_message,"
    " state_timestamp, created, start_time, end_time, run_count"
)

# -- Flow runs ----------------------------------------------------------------

# Does nothing when the id is taken (the caller sees no row written).
INSERT_FLOW_RUN = (
    "INSERT INTO flow_runs (id, name, flow_name, deployment, parent_task_run_id,"
    " parameters, tags, state_type, state_name, state_message, state_timestamp,"
    " created, updated, expected_start_time, start_time, end_time, run_count,"
    " priority, work_pool, work_queue, pid, host) VALUES (:id, :name, :flow_name,"
    " :deployment, :parent, :parameters, :tags, :st, :sn, :sm, :ts, :created,"
    " :created, :expected, :start, :end, :run_count, :priority, :pool, :queue, :pid,"
    " :host) ON CONFLICT (id) DO NOTHING"
)
SELECT_FLOW_RUN_BY_ID = "SELECT " + FLOW_COLUMNS + " FROM flow_runs WHERE id = :id"
# The state a change starts from; the caller appends the dialect's row lock.
SELECT_FLOW_RUN_STATE = "SELECT state_type, start_time FROM flow_runs WHERE id = :id"
# Sets the first start time and counts a run on entering RUNNING (:running = 1),
# and the end time on a final state (:final = 1).
UPDATE_FLOW_RUN_STATE = (
    "UPDATE flow_runs SET state_type = :st, state_name = :sn, state_message = :sm,"
    " state_timestamp = :ts, updated = :now,"
    " start_time = CASE WHEN :running = 1 AND start_time IS NULL THEN :ts"
    " ELSE start_time END,"
    " run_count = run_count + :running,"
    " end_time = CASE WHEN :final = 1 THEN :ts ELSE end_time END WHERE id = :id"
)
SELECT_TASK_RUNS_OF_FLOW_RUN = (
    "SELECT " + TASK_COLUMNS + " FROM task_runs WHERE flow_run_id = :id ORDER BY created, id"
)

#: Filters of ``select_flow_runs``, joined with AND.
FLOW_RUNS_OF_DEPLOYMENT = "deployment = :deployment"
FLOW_RUNS_OF_FLOW = "flow_name = :flow_name"
_SELECT_FLOW_RUNS = "SELECT " + FLOW_COLUMNS + " FROM flow_runs"
_FLOW_RUNS_NEWEST_FIRST = " ORDER BY created DESC, id DESC LIMIT :limit OFFSET :offset"


def flow_runs_in_states(marks: str) -> str:
    """The filter of ``select_flow_runs`` on state types, ``marks`` their placeholders."""
    return f"state_type IN ({marks})"


def select_flow_runs(filters: Sequence[str]) -> str:
    """A page of flow runs, newest first, that pass every one of ``filters``."""
    clause = f" WHERE {' AND '.join(filters)}" if filters else ""
    return _SELECT_FLOW_RUNS + clause + _FLOW_RUNS_NEWEST_FIRST


COUNT_FLOW_RUNS_BY_STATE = "SELECT state_type, COUNT(*) FROM flow_runs GROUP BY state_type"

# -- Task runs ----------------------------------------------------------------


def select_task_run_states(marks: str) -> str:
    """The stored state (time, type) of the task runs whose ids ``marks`` names."""
    return f"SELECT id, state_timestamp, state_type FROM task_runs WHERE id IN ({marks})"


INSERT_TASK_RUN = (
    "INSERT INTO task_runs (id, flow_run_id, name, task_key, tags, state_type,"
    " state_name, state_message, state_timestamp, created, start_time, end_time,"
    " run_count) VALUES (:id, :flow_run_id, :name, :task_key, :tags, :st, :sn, :sm,"
    " :ts, :created, :start, :end, :run_count)"
)
UPDATE_TASK_RUN = (
    "UPDATE task_runs SET state_type = :st, state_name = :sn, state_message = :sm,"
    " state_timestamp = :ts, start_time = COALESCE(start_time, :start),"
    " end_time = :end, run_count = :run_count"
    # A late report of older states never moves a run backwards.
    " WHERE id = :id AND state_timestamp <= :ts"
)
SELECT_TASK_RUN_BY_ID = "SELECT " + TASK_COLUMNS + " FROM task_runs WHERE id = :id"

# -- States and logs ----------------------------------------------------------

SELECT_STATES_OF_RUN = (
    "SELECT type, name, message, timestamp FROM states WHERE run_id = :id ORDER BY id"
)
INSERT_STATE = (
    "INSERT INTO states (run_id, run_kind, type, name, message, timestamp)"
    " VALUES (:run_id, :kind, :type, :name, :message, :ts)"
)
INSERT_LOG = (
    "INSERT INTO logs (flow_run_id, task_run_id, level, logger, message, timestamp)"
    " VALUES (:f, :t, :level, :logger, :message, :ts)"
)
# The log lines of a flow run (its task runs' too) after a given id.
SELECT_LOGS_AFTER = (
    "SELECT id, flow_run_id, task_run_id, level, logger, message, timestamp"
    " FROM logs WHERE flow_run_id = :id AND id > :after ORDER BY id LIMIT :limit"
)

# -- Run leases: who to wake --------------------------------------------------

# The workers of a pool heard from since :cut that can be woken.
SELECT_POOL_CLAIMERS = (
    "SELECT id, wake_address, host, pid FROM workers WHERE pool = :pool"
    " AND wake_address IS NOT NULL AND last_heartbeat > :cut"
)


def select_worker_wake_addresses(marks: str) -> str:
    """The wake addresses of the workers whose ids ``marks`` names (those that have one)."""
    return (
        f"SELECT id, wake_address, host, pid FROM workers WHERE id IN ({marks})"
        " AND wake_address IS NOT NULL"
    )


# -- Run leases: how a run ends -----------------------------------------------

# Whether a run handed back is claimed; the caller appends the dialect's row lock.
SELECT_FLOW_RUN_LEASE_STATE = "SELECT state_type, lease_expires FROM flow_runs WHERE id = :id"
SELECT_FLOW_RUN_CLAIM = (
    "SELECT lease_id, work_pool, deployment, blocked_on, lease_expires FROM flow_runs"
    " WHERE id = :id"
)
_CLEAR_FLOW_RUN_CLAIM = (
    "UPDATE flow_runs SET lease_id = NULL, lease_expires = NULL, blocked_on = '', updated = :now"
)
# A run that ended lets go of its lease and whatever held it back.
CLEAR_FLOW_RUN_LEASE = _CLEAR_FLOW_RUN_CLAIM + " WHERE id = :id"
# A claimed run handed back before it started: its worker lets go of it too.
UNCLAIM_FLOW_RUN = _CLEAR_FLOW_RUN_CLAIM + ", worker_id = NULL" + " WHERE id = :id"
CLEAR_FLOW_RUN_BLOCKED_ON = "UPDATE flow_runs SET blocked_on = '', updated = :now WHERE id = :id"

# -- Run leases: expiry -------------------------------------------------------

# Ordered by the indexed column: an index walk from the oldest lease whatever
# the planner's statistics say (most runs have none).
SELECT_EXPIRED_FLOW_RUNS = (
    "SELECT id FROM flow_runs WHERE lease_expires < :now ORDER BY lease_expires LIMIT :n"
)


def select_expired_among(marks: str) -> str:
    """Those of the runs ``marks`` names whose lease expired before ``:now``, oldest first."""
    return (
        f"SELECT id, state_type FROM flow_runs WHERE id IN ({marks})"
        " AND lease_expires < :now ORDER BY lease_expires"
    )


# A run the sweep could not end keeps no lease, so it is not swept again.
DROP_FLOW_RUN_LEASE = "UPDATE flow_runs SET lease_expires = NULL, updated = :now WHERE id = :id"

# -- Run leases: heartbeats and cancellation ----------------------------------

UPDATE_WORKER_HEARTBEAT = "UPDATE workers SET last_heartbeat = :now WHERE id = :id"


def select_leased_runs_of_worker(marks: str) -> str:
    """Those of the runs ``marks`` names that worker ``:w`` holds under a live lease."""
    return (
        f"SELECT id, state_type, lease_id FROM flow_runs WHERE id IN ({marks})"
        " AND worker_id = :w AND lease_expires IS NOT NULL"
    )


def renew_run_leases(marks: str) -> str:
    """Move the lease of the runs ``marks`` names to expire at ``:e``."""
    return f"UPDATE flow_runs SET lease_expires = :e WHERE id IN ({marks})"


# Who runs a run being cancelled; the caller appends the dialect's row lock.
SELECT_FLOW_RUN_WORKER = "SELECT state_type, worker_id FROM flow_runs WHERE id = :id"
