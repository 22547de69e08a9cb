"""The reads behind "why is this run waiting?": leases, waiters and runs, as they are.

Run by ``store/explain.py``, read-only. A run's place in a queue is counted by
the same clause (``... ahead of it``) that lists the runs ahead of it, so each
place has its three statements built from one clause (``PlaceStatements``).
"""

from __future__ import annotations

from typing import NamedTuple

from headway.core.views import MAX_LISTED
from headway.store.queries import events

# -- A run's claim, its waits and its leases ----------------------------------

# The columns ``RunClaim`` is made of.
SELECT_RUN_CLAIM = (
    "SELECT id, state_type, state_name, deployment, work_pool, work_queue, priority,"
    " expected_start_time, created, blocked_on, concurrency_key, worker_id, lease_id"
    " FROM flow_runs WHERE id = :id"
)
# A holder's live waiter rows, in the order its requests queued.
SELECT_WAITS_OF_HOLDER = (
    "SELECT waiter_id, limit_name, seq, slots, priority, holder_kind, pid, host,"
    " created FROM waiters WHERE holder_id = :h AND expires > :now"
    " ORDER BY seq, limit_name"
)
# The task runs of a flow run that wait for slots now, with the limits they wait on.
SELECT_TASK_WAITS_OF_FLOW_RUN = (
    "SELECT DISTINCT t.id, t.name, w.limit_name FROM waiters w JOIN task_runs t"
    " ON t.id = w.holder_id WHERE t.flow_run_id = :f AND w.expires > :now"
    " ORDER BY t.id, w.limit_name LIMIT 50"
)
#: A lease row's columns, in the order ``explain._lease`` reads them.
LEASE_COLUMNS = "lease_id, limit_name, slots, holder_kind, holder_id, pid, host, created, expires"
SELECT_LEASES_OF_HOLDER = (
    "SELECT " + LEASE_COLUMNS + " FROM leases WHERE holder_id = :h ORDER BY created, limit_name"
)

# -- A limit ------------------------------------------------------------------

# A limit's counters, with its live waiters, its leases and the slot-seconds they
# have held so far (the row ``events.limit_stats_of`` reads).
SELECT_LIMIT_STATS = "SELECT " + events.LIMIT_STATS_COLUMNS + " FROM limits WHERE name = :name"
# Its oldest holders, at most :n.
SELECT_LEASES_OF_LIMIT = (
    "SELECT " + LEASE_COLUMNS + " FROM leases WHERE limit_name = :name"
    " ORDER BY created, lease_id LIMIT :n"
)

# -- A waiter's place in its limit's queue ------------------------------------

# The live waiters of :name served before the waiter (:p, :seq): higher priority
# first, then earlier.
_WAITERS_AHEAD = (
    "FROM waiters WHERE limit_name = :name AND expires > :now"
    " AND (priority > :p OR (priority = :p AND seq < :seq))"
)
COUNT_WAITERS_AHEAD = "SELECT COUNT(*), COALESCE(SUM(slots), 0) " + _WAITERS_AHEAD
SELECT_WAITERS_AHEAD = (
    "SELECT holder_kind, holder_id, slots, priority, created, pid, host "
    + _WAITERS_AHEAD
    + " ORDER BY priority DESC, seq LIMIT "
    + str(MAX_LISTED)
)
COUNT_WAITERS_OF_LIMIT = "SELECT COUNT(*) FROM waiters WHERE limit_name = :name AND expires > :now"

# -- A run's place among the runs waiting to be claimed -----------------------


class PlaceStatements(NamedTuple):
    """The three reads of a run's place in one queue of runs."""

    #: How many runs are ahead of the run.
    count_ahead: str
    #: The first of them (at most ``MAX_LISTED``), in claim order.
    select_ahead: str
    #: How many runs wait in the queue, the run among them.
    count_waiting: str


def _place_statements(waiting: str) -> PlaceStatements:
    # ``waiting`` picks the runs of the queue; the runs ahead of :id are claimed
    # before it: higher priority, then scheduled earlier, then created earlier.
    ahead_of = (
        f"FROM flow_runs WHERE {waiting} AND id <> :id AND (priority > :p OR (priority = :p"
        " AND (expected_start_time < :t OR (expected_start_time = :t AND (created < :c"
        " OR (created = :c AND id < :id))))))"
    )
    return PlaceStatements(
        count_ahead=f"SELECT COUNT(*) {ahead_of}",
        select_ahead=(
            f"SELECT id, priority, created, pid, host {ahead_of}"
            f" ORDER BY priority DESC, expected_start_time, created, id LIMIT {MAX_LISTED}"
        ),
        count_waiting=f"SELECT COUNT(*) FROM flow_runs WHERE {waiting}",
    )


_DUE = " AND state_type = 'SCHEDULED' AND blocked_on = '' AND expected_start_time <= :now"
#: The deployment runs held back by limit :b.
BLOCKED_PLACE = _place_statements("blocked_on = :b AND state_type = 'SCHEDULED'")
#: The due runs of pool :pool.
POOL_PLACE = _place_statements("work_pool = :pool" + _DUE)
#: The due runs of queue :queue of pool :pool.
QUEUE_PLACE = _place_statements("work_pool = :pool AND work_queue = :queue" + _DUE)

# -- Names, a deployment's use, who waits -------------------------------------


def select_run_names(marks: str) -> str:
    """The names of the flow runs and task runs whose ids ``marks`` names."""
    return (
        f"SELECT id, name FROM flow_runs WHERE id IN ({marks})"
        f" UNION ALL SELECT id, name FROM task_runs WHERE id IN ({marks})"
    )


# How many runs of deployment :d are active, wait for a slot, are due.
COUNT_DEPLOYMENT_RUNS = (
    "SELECT COALESCE(SUM(CASE WHEN state_type IN ('PENDING', 'RUNNING',"
    " 'CANCELLING', 'PAUSED') THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN"
    " state_type = 'SCHEDULED' AND state_name = 'AwaitingConcurrencySlot' THEN 1"
    " ELSE 0 END), 0), COALESCE(SUM(CASE WHEN state_type = 'SCHEDULED' AND"
    " expected_start_time <= :now THEN 1 ELSE 0 END), 0) FROM flow_runs"
    " WHERE deployment = :d"
)
SELECT_RECENT_DEPLOYMENT_RUNS = (
    "SELECT id FROM flow_runs WHERE deployment = :d ORDER BY created DESC LIMIT 20"
)


def select_task_run_tags(marks: str) -> str:
    """The tags of the task runs of the flow runs whose ids ``marks`` names (at most 2000)."""
    return f"SELECT id, tags FROM task_runs WHERE flow_run_id IN ({marks}) LIMIT 2000"


def select_limits_granted(marks: str) -> str:
    """The limits that granted a slot to any of the runs whose ids ``marks`` names."""
    return (
        "SELECT DISTINCT limit_name FROM events WHERE kind = 'slot.granted'"
        f" AND run_id IN ({marks})"
    )


# Deployment runs held back by their limit now, the longest held first.
SELECT_BLOCKED_RUNS = (
    "SELECT id, name, blocked_on, state_timestamp, state_message FROM flow_runs"
    " WHERE state_type = 'SCHEDULED' AND state_name = 'AwaitingConcurrencySlot'"
    " ORDER BY state_timestamp LIMIT :n"
)
SELECT_LIVE_WAITERS = (
    "SELECT holder_kind, holder_id, limit_name, created, slots, priority FROM waiters"
    " WHERE expires > :now ORDER BY created LIMIT :n"
)
