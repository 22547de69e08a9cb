"""The SQL of deployments and their schedules (``store/deployments.py``).

A deployment's limits are rows of the slot engine (``store/slots/``), whose
statements are not here.
"""

from __future__ import annotations

# -- Deployments ---------------------------------------------------------------

#: A deployment's row, in the order ``deployments._deployment`` reads it.
DEPLOYMENT_COLUMNS = (
    "id, full_name, flow_name, name, entrypoint, parameters, parameter_schema, tags,"
    " work_pool, work_queue, paused, concurrency_limit, collision_strategy, concurrency_key,"
    " description, created, updated, code_repository, code_ref"
)

SELECT_WORK_QUEUE_EXISTS = "SELECT 1 FROM work_queues WHERE pool = :p AND name = :q"
# The deployment an upsert replaces; the caller appends the dialect's ``for_update``.
SELECT_DEPLOYMENT_ID_AND_PAUSED = "SELECT id, paused FROM deployments WHERE full_name = :f"
INSERT_DEPLOYMENT = (
    "INSERT INTO deployments (id, full_name, flow_name, name, entrypoint,"
    " parameters, parameter_schema, tags, work_pool, work_queue, paused,"
    " concurrency_limit, collision_strategy, concurrency_key, description,"
    " created, updated, code_repository, code_ref) VALUES (:id, :full, :flow,"
    " :name, :entry, :params, :schema, :tags, :pool, :queue, :paused, :limit,"
    " :strategy, :key, :desc, :now, :now, :repo, :ref)"
)
UPDATE_DEPLOYMENT = (
    "UPDATE deployments SET flow_name = :flow, name = :name, entrypoint = :entry,"
    " parameters = :params, parameter_schema = :schema, tags = :tags,"
    " work_pool = :pool, work_queue = :queue, paused = :paused,"
    " concurrency_limit = :limit, collision_strategy = :strategy,"
    " concurrency_key = :key, description = :desc, updated = :now,"
    " code_repository = :repo, code_ref = :ref WHERE id = :id"
)
SELECT_SCHEDULES_OF_DEPLOYMENT = (
    "SELECT schedule FROM deployment_schedules WHERE deployment_id = :d ORDER BY position"
)
DELETE_SCHEDULES_OF_DEPLOYMENT = "DELETE FROM deployment_schedules WHERE deployment_id = :d"
INSERT_DEPLOYMENT_SCHEDULE = (
    "INSERT INTO deployment_schedules (id, deployment_id, position, schedule,"
    " active) VALUES (:id, :d, :pos, :s, :t)"
)
# The runs a deployment's schedules created ahead that are not due yet.
SELECT_RUNS_SCHEDULED_AHEAD = (
    "SELECT id FROM flow_runs WHERE deployment = :d AND state_type = 'SCHEDULED'"
    " AND scheduled_slot IS NOT NULL AND expected_start_time > :now"
)


def delete_states_of_runs(marks: str) -> str:
    """Delete the states of the runs whose ids are the ``marks`` (see ``sql.in_list``)."""
    return f"DELETE FROM states WHERE run_id IN ({marks})"


def delete_flow_runs(marks: str) -> str:
    """Delete the flow runs whose ids are the ``marks`` (see ``sql.in_list``)."""
    return f"DELETE FROM flow_runs WHERE id IN ({marks})"


SELECT_DEPLOYMENT = "SELECT " + DEPLOYMENT_COLUMNS + " FROM deployments WHERE full_name = :f"


def select_schedules_of_deployments(marks: str) -> str:
    """The schedules of the deployments whose ids are the ``marks``, in order."""
    return (
        "SELECT id, deployment_id, schedule, active FROM deployment_schedules"
        f" WHERE deployment_id IN ({marks}) ORDER BY position"
    )


_SELECT_DEPLOYMENTS = "SELECT " + DEPLOYMENT_COLUMNS + " FROM deployments"
_OF_POOL = " WHERE work_pool = :pool"
_OF_FLOW = " WHERE flow_name = :flow"
_OF_POOL_AND_FLOW = " WHERE work_pool = :pool AND flow_name = :flow"
_BY_FULL_NAME = " ORDER BY full_name"
#: The four lists, by (of one pool, of one flow).
_LIST_DEPLOYMENTS = {
    (False, False): _SELECT_DEPLOYMENTS + _BY_FULL_NAME,
    (True, False): _SELECT_DEPLOYMENTS + _OF_POOL + _BY_FULL_NAME,
    (False, True): _SELECT_DEPLOYMENTS + _OF_FLOW + _BY_FULL_NAME,
    (True, True): _SELECT_DEPLOYMENTS + _OF_POOL_AND_FLOW + _BY_FULL_NAME,
}


def select_deployments(*, of_pool: bool, of_flow: bool) -> str:
    """Deployments by name: all, or those of the pool ``:pool`` and/or the flow ``:flow``."""
    return _LIST_DEPLOYMENTS[of_pool, of_flow]


SET_DEPLOYMENT_PAUSED = "UPDATE deployments SET paused = :p, updated = :now WHERE id = :id"
SET_DEPLOYMENT_CONCURRENCY = (
    "UPDATE deployments SET concurrency_limit = :l, collision_strategy = :s,"
    " concurrency_key = :k, updated = :now WHERE id = :id"
)
SELECT_SCHEDULED_RUNS_OF_DEPLOYMENT = (
    "SELECT id FROM flow_runs WHERE deployment = :d AND state_type = 'SCHEDULED'"
)
DELETE_DEPLOYMENT_KEYS = "DELETE FROM deployment_keys WHERE deployment = :d"
DELETE_DEPLOYMENT = "DELETE FROM deployments WHERE id = :d"
