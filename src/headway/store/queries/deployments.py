"""The SQL of deployments, their schedules, and the runs made and claimed from them.

Deployments and their schedules (``store/deployments.py``); creating deployment
runs, on demand and ahead from schedules (``store/scheduling.py``); claiming
them, the claim's transaction (``store/claims.py``) and its bounded reads
(``store/claim_reads.py``). A deployment's limits are rows of the slot engine
(``store/slots/``), whose statements are not here.
"""

from __future__ import annotations

from headway.store.queries import runs

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

# -- Scheduling: deployment runs, on demand and ahead from schedules -------------

# A run's (deployment, scheduled_slot) is unique: a schedule slot that has its
# run already inserts nothing.
INSERT_DEPLOYMENT_RUN = (
    "INSERT INTO flow_runs (id, name, flow_name, deployment, parameters, tags,"
    " state_type, state_name, state_message, state_timestamp, created, updated,"
    " expected_start_time, run_count, priority, work_pool, work_queue, scheduled_slot,"
    " concurrency_key) VALUES (:id, :name, :flow, :dep, :params, :tags, :st, :sn, NULL,"
    " :now, :now, :now, :expected, 0, :priority, :pool, :queue, :slot, :key)"
    " ON CONFLICT (deployment, scheduled_slot) DO NOTHING"
)
# A run created (or claimed) as the caller returns it.
SELECT_FLOW_RUN_BY_ID = runs.SELECT_FLOW_RUN_BY_ID
# The active schedules of the deployments not paused.
SELECT_ACTIVE_SCHEDULES = (
    "SELECT d.id, d.full_name, s.schedule FROM deployments d"
    " JOIN deployment_schedules s ON s.deployment_id = d.id"
    " WHERE d.paused = :f AND s.active = :t ORDER BY d.id, s.position"
)
# What a deployment's runs are made of; the caller appends the dialect's ``for_update``.
SELECT_DEPLOYMENT_TO_SCHEDULE = (
    "SELECT full_name, flow_name, name, parameters, tags, work_pool, work_queue,"
    " concurrency_key, paused FROM deployments WHERE id = :id"
)
# Whether the same event was recorded since ``:since``.
SELECT_RECENT_EVENT = (
    "SELECT 1 FROM events WHERE kind = :kind AND detail = :detail AND timestamp > :since"
)
# Deployment runs still plain Scheduled past ``:cut``, oldest first, a batch at a time.
SELECT_LATE_RUNS = (
    "SELECT id FROM flow_runs WHERE state_type = 'SCHEDULED'"
    " AND state_name = 'Scheduled' AND expected_start_time < :cut"
    " AND deployment IS NOT NULL ORDER BY expected_start_time LIMIT 500"
)

# -- Claims: the claim's transaction ---------------------------------------------


def lock_deployments(marks: str) -> str:
    """The deployments named by the ``marks``, in name order; the caller appends the
    dialect's ``for_update`` (a claim without a pool locks those it serves)."""
    return f"SELECT id FROM deployments WHERE full_name IN ({marks}) ORDER BY full_name"


SELECT_QUEUES_TO_CLAIM = (
    "SELECT name, priority, paused FROM work_queues WHERE pool = :p ORDER BY name"
)
# The caller appends the dialect's ``for_update``: the run is locked before it is claimed.
SELECT_RUN_STATE_TYPE = "SELECT state_type FROM flow_runs WHERE id = :id"
# A claimed run: its lease, its worker, no longer waiting on a limit.
MARK_RUN_CLAIMED = (
    "UPDATE flow_runs SET lease_id = :lease, lease_expires = :e, worker_id = :w,"
    " blocked_on = '', concurrency_key = :key, updated = :now WHERE id = :id"
)


def select_limit_names(marks: str) -> str:
    """Which of the limits named by the ``marks`` exist."""
    return f"SELECT name FROM limits WHERE name IN ({marks})"


# When a deployment's run of a concurrency key was last claimed (keys take turns).
UPSERT_DEPLOYMENT_KEY_SERVED = (
    "INSERT INTO deployment_keys (deployment, key, last_claimed) VALUES (:d, :k, :now)"
    " ON CONFLICT (deployment, key) DO UPDATE SET last_claimed = :now"
)
SET_RUN_BLOCKED_ON = (
    "UPDATE flow_runs SET blocked_on = :b, concurrency_key = :k, updated = :now WHERE id = :id"
)
# The runs holding a deployment's slots (of one key: ``..._OF_KEY``), oldest first.
_SELECT_ACTIVE_RUNS = (
    "SELECT id, worker_id FROM flow_runs WHERE deployment = :d AND state_type IN"
    " ('PENDING', 'RUNNING', 'PAUSED')"
)
SELECT_ACTIVE_RUNS_OF_DEPLOYMENT = _SELECT_ACTIVE_RUNS + " ORDER BY created"
SELECT_ACTIVE_RUNS_OF_DEPLOYMENT_KEY = (
    _SELECT_ACTIVE_RUNS + " AND concurrency_key = :k ORDER BY created"
)
# The runs waiting on limit ``:b`` that came before run ``:id`` (CANCEL_IN_PROGRESS).
SELECT_RUNS_WAITING_BEFORE = (
    "SELECT id FROM flow_runs WHERE blocked_on = :b AND state_type = 'SCHEDULED'"
    " AND id <> :id AND (expected_start_time < :t OR (expected_start_time = :t"
    " AND created <= :c))"
)

# -- Claim reads: what a claim may take ------------------------------------------

#: A candidate run's row, in the order ``claim_reads.candidate_of`` reads it.
CANDIDATE_COLUMNS = (
    "id, deployment, work_queue, priority, expected_start_time, parameters,"
    " concurrency_key, state_name, blocked_on, created, work_pool"
)


def select_limits_room(marks: str) -> str:
    """What the room of the limits named by the ``marks`` is computed from."""
    return (
        "SELECT name, slot_limit, active, active_slots, slot_decay_per_second, decayed_at"
        f" FROM limits WHERE name IN ({marks})"
    )


def select_due_runs_of_deployments(marks: str) -> str:
    """Due runs without a pool of the deployments named by the ``marks``, not waiting on
    a limit, oldest first, ``:n`` at most."""
    return (
        f"SELECT {CANDIDATE_COLUMNS} FROM flow_runs WHERE work_pool IS NULL"
        " AND work_queue IS NULL AND state_type = 'SCHEDULED' AND blocked_on = ''"
        f" AND expected_start_time <= :now AND deployment IN ({marks})"
        " AND lease_expires IS NULL"
        " ORDER BY expected_start_time LIMIT :n"
    )


# Due runs of one queue not waiting on a limit, oldest first, ``:n`` at most.
SELECT_DUE_RUNS_OF_QUEUE = (
    "SELECT " + CANDIDATE_COLUMNS + " FROM flow_runs WHERE work_pool = :p"
    " AND work_queue = :q AND state_type = 'SCHEDULED' AND blocked_on = ''"
    " AND expected_start_time <= :now AND lease_expires IS NULL"
    " ORDER BY expected_start_time LIMIT :n"
)
# The distinct limits runs wait on, by a skip scan: one index probe per limit.
SELECT_LIMITS_WAITED_ON = (
    "WITH RECURSIVE g(name) AS (SELECT MIN(blocked_on) FROM flow_runs"
    " WHERE blocked_on > '' UNION ALL SELECT (SELECT MIN(f.blocked_on)"
    " FROM flow_runs f WHERE f.blocked_on > g.name) FROM g WHERE g.name IS NOT NULL)"
    " SELECT name FROM g WHERE name IS NOT NULL"
)
# The priority levels of the runs waiting on limit ``:b``, highest first, one at a time.
SELECT_TOP_PRIORITY_WAITING = "SELECT MAX(priority) FROM flow_runs WHERE blocked_on = :b"
SELECT_WAITING_RUNS_AT_PRIORITY = (
    "SELECT " + CANDIDATE_COLUMNS + " FROM flow_runs WHERE blocked_on = :b"
    " AND priority = :p AND state_type = 'SCHEDULED' AND lease_expires IS NULL"
    " ORDER BY expected_start_time LIMIT :n"
)
SELECT_NEXT_PRIORITY_WAITING = (
    "SELECT MAX(priority) FROM flow_runs WHERE blocked_on = :b AND priority < :p"
)


def select_deployment_infos(marks: str) -> str:
    """What a claim needs of the deployments named by the ``marks``."""
    return (
        "SELECT full_name, concurrency_limit, collision_strategy, concurrency_key,"
        f" entrypoint FROM deployments WHERE full_name IN ({marks})"
    )


def select_keys_last_served(marks: str) -> str:
    """When each key of the deployments named by the ``marks`` last had a run claimed."""
    return (
        f"SELECT deployment, key, last_claimed FROM deployment_keys WHERE deployment IN ({marks})"
    )


def select_next_due_of_deployments(marks: str) -> str:
    """The time of the next run without a pool, not due yet, of the deployments named by
    the ``marks``."""
    return (
        "SELECT expected_start_time FROM flow_runs WHERE work_pool IS NULL"
        " AND work_queue IS NULL AND state_type = 'SCHEDULED' AND blocked_on = ''"
        f" AND expected_start_time > :now AND deployment IN ({marks})"
        " ORDER BY expected_start_time LIMIT 1"
    )


# The time of the next run of one queue not due yet. ORDER BY ... LIMIT 1 rather
# than MIN: the claim index walked in order, whatever the planner's statistics (a
# fresh backlog has none).
SELECT_NEXT_DUE_OF_QUEUE = (
    "SELECT expected_start_time FROM flow_runs WHERE work_pool = :p"
    " AND work_queue = :q AND state_type = 'SCHEDULED' AND blocked_on = ''"
    " AND expected_start_time > :now ORDER BY expected_start_time LIMIT 1"
)
