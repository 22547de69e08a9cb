"""The SQL of work pools, their queues and workers (``store/pools.py``).

A pool's, a queue's or a deployment's limit is a row of the slot engine
(``store/slots/``), whose statements are not here.
"""

from __future__ import annotations

# -- Work pools ----------------------------------------------------------------

#: A pool's row, in the order ``Pools._work_pool`` reads it.
POOL_COLUMNS = "name, type, paused, description, created, id, updated"

INSERT_WORK_POOL = (
    "INSERT INTO work_pools (id, name, type, paused, description, created, updated)"
    " VALUES (:id, :name, :type, :f, :d, :now, :now) ON CONFLICT (name) DO NOTHING"
)
# The caller appends the dialect's ``for_update`` to lock the row.
SELECT_WORK_POOL = "SELECT " + POOL_COLUMNS + " FROM work_pools WHERE name = :n"
SELECT_WORK_POOL_NAMES = "SELECT name FROM work_pools ORDER BY name"
SELECT_WORK_POOLS = "SELECT " + POOL_COLUMNS + " FROM work_pools ORDER BY name"
SET_WORK_POOL_PAUSED = "UPDATE work_pools SET paused = :p, updated = :now WHERE name = :n"
TOUCH_WORK_POOL = "UPDATE work_pools SET updated = :now WHERE name = :n"
# The deployments that keep a pool from being deleted.
SELECT_DEPLOYMENT_NAMES_OF_POOL = (
    "SELECT full_name FROM deployments WHERE work_pool = :n ORDER BY full_name"
)
COUNT_ACTIVE_RUNS_OF_POOL = (
    "SELECT COUNT(*) FROM flow_runs WHERE work_pool = :n AND state_type IN"
    " ('PENDING', 'RUNNING', 'CANCELLING')"
)
SELECT_QUEUE_NAMES_OF_POOL = "SELECT name FROM work_queues WHERE pool = :n"
DELETE_QUEUES_OF_POOL = "DELETE FROM work_queues WHERE pool = :n"
DELETE_WORKERS_OF_POOL = "DELETE FROM workers WHERE pool = :n"
DELETE_WORK_POOL = "DELETE FROM work_pools WHERE name = :n"

# -- Work queues ---------------------------------------------------------------

INSERT_WORK_QUEUE = (
    "INSERT INTO work_queues (id, pool, name, priority, paused, created, updated)"
    " VALUES (:id, :pool, :name, :p, :f, :now, :now) ON CONFLICT (pool, name) DO NOTHING"
)
SELECT_QUEUES_OF_POOL = (
    "SELECT id, pool, name, priority, paused, created, updated FROM work_queues"
    " WHERE pool = :pool ORDER BY priority DESC, name"
)
# A pool's runs per queue: 'running' (PENDING, RUNNING, CANCELLING) and
# 'waiting' (SCHEDULED and due).
COUNT_RUNS_PER_QUEUE = (
    "SELECT work_queue, CASE WHEN state_type = 'SCHEDULED' THEN 'waiting'"
    " ELSE 'running' END, COUNT(*) FROM flow_runs WHERE work_pool = :pool AND"
    " (state_type IN ('PENDING', 'RUNNING', 'CANCELLING') OR (state_type = 'SCHEDULED'"
    " AND expected_start_time <= :now)) GROUP BY work_queue, CASE WHEN state_type ="
    " 'SCHEDULED' THEN 'waiting' ELSE 'running' END"
)
# The queues a pool has, named in the message about one it has not.
SELECT_QUEUE_NAMES_OF_POOL_SORTED = "SELECT name FROM work_queues WHERE pool = :p ORDER BY name"
SET_WORK_QUEUE_PRIORITY = (
    "UPDATE work_queues SET priority = :p, updated = :now WHERE pool = :pool AND name = :n"
)
SET_WORK_QUEUE_PAUSED = (
    "UPDATE work_queues SET paused = :p, updated = :now WHERE pool = :pool AND name = :n"
)
SELECT_WORK_QUEUE_ID = "SELECT id FROM work_queues WHERE pool = :pool AND name = :n"
TOUCH_WORK_QUEUE = "UPDATE work_queues SET updated = :now WHERE pool = :pool AND name = :n"
COUNT_DEPLOYMENTS_OF_QUEUE = (
    "SELECT COUNT(*) FROM deployments WHERE work_pool = :p AND work_queue = :q"
)
DELETE_WORK_QUEUE = "DELETE FROM work_queues WHERE pool = :p AND name = :q"

# -- Workers -------------------------------------------------------------------

# Records a worker, or refreshes the one of that pool and name.
UPSERT_WORKER = (
    "INSERT INTO workers (id, pool, name, pid, host, wake_address, created,"
    " last_heartbeat) VALUES (:id, :pool, :name, :pid, :host, :addr, :now, :now)"
    " ON CONFLICT (pool, name) DO UPDATE SET pid = :pid, host = :host,"
    " wake_address = :addr, last_heartbeat = :now"
)
SELECT_WORKER = (
    "SELECT id, name, pool, pid, host, last_heartbeat FROM workers"
    " WHERE pool = :pool AND name = :name"
)
# Each worker with the number of runs it holds a lease on, most recently heard from first.
_SELECT_WORKERS_HEAD = (
    "SELECT w.id, w.name, w.pool, w.pid, w.host, w.last_heartbeat, (SELECT COUNT(*)"
    " FROM flow_runs f WHERE f.worker_id = w.id AND f.lease_expires IS NOT NULL)"
    " FROM workers w"
)
_SELECT_WORKERS_ORDER = " ORDER BY w.last_heartbeat DESC"
SELECT_WORKERS = _SELECT_WORKERS_HEAD + _SELECT_WORKERS_ORDER
SELECT_WORKERS_OF_POOL = _SELECT_WORKERS_HEAD + " WHERE w.pool = :pool" + _SELECT_WORKERS_ORDER
DELETE_WORKER = "DELETE FROM workers WHERE id = :id"
