"""The statements of flow runs, task runs, their states and logs.

Run by ``store/runs.py``. A statement that locks the row it reads gets the
dialect's row lock (``tx.dialect.for_update``) appended by the part.
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
