"""The slot engine's statements: acquire, handoff, release, renew, reaping, the waits of runs.

Leases, waiters, handoffs and the counters of limits as slot operations
change them (``store/slots/``: ``rows.py``, ``engine.py``, ``fast.py``,
``handoff.py``, ``reaper.py``, ``run_waits.py``), and on PostgreSQL the calls
of the functions that do the same work in the database (``pg.py``,
``pg_acquire.py``), with what is read back when such a call's answer was lost.
A limit's own row (created, read, locked) is in ``queries/limits.py``.
"""

from __future__ import annotations

from headway.store.queries.limits import LIMIT_COLUMNS

#: A lease row's columns, and their parameters (``slots/rows.py``: ``lease_params``).
LEASE_COLUMNS = (
    "lease_id, limit_name, slots, holder_kind, holder_id, pid, host, proc_start, created,"
    " expires, node"
)
LEASE_VALUES = ":id, :name, :slots, :kind, :holder, :pid, :host, :start, :now, :expires, :node"
#: What a waiter row holds that a grant handed to it needs.
WAITER_COLUMNS = (
    "waiter_id, limit_name, slots, priority, seq, wake_address, host, pid, proc_start, node,"
    " holder_kind, holder_id, mode, lease_seconds, created, request_names"
)

# -- acquire: the decision's read, a grant, a lease (slots/rows.py) -------------------

# What waits ahead of a request of priority :p and place :seq on a limit.
_AHEAD_OF = (
    "FROM waiters w WHERE w.limit_name = limits.name AND w.expires > :now"
    " AND (w.priority > :p OR (w.priority = :p AND w.seq < :seq))"
)
_SELECT_LIMITS_FOR_ACQUIRE_IN = (
    "SELECT " + LIMIT_COLUMNS + ", (SELECT COUNT(*) " + _AHEAD_OF + "),"
    " (SELECT COALESCE(SUM(w.slots), 0) " + _AHEAD_OF + ")"
    " FROM limits WHERE name IN ("
)


def select_limits_for_acquire(marks: str) -> str:
    """The limits named by ``marks``, each with the count and slots of who waits ahead."""
    return f"{_SELECT_LIMITS_FOR_ACQUIRE_IN}{marks})"


# A grant's counters on one limit; a request leaving its queue takes :dq off its count.
GRANT_SLOTS = (
    "UPDATE limits SET active_slots = :v, decayed_at = :now, grants = grants + 1,"
    " total_wait_seconds = total_wait_seconds + :waited,"
    " queued = CASE WHEN queued > :dq THEN queued - :dq ELSE 0 END WHERE name = :name"
)
INSERT_LEASE = "INSERT INTO leases (" + LEASE_COLUMNS + ") VALUES (" + LEASE_VALUES + ")"
# One request fewer in a limit's queue count.
DECREMENT_QUEUED = (
    "UPDATE limits SET queued = CASE WHEN queued > 0 THEN queued - 1 ELSE 0 END WHERE name = :name"
)

# -- a request out of its queues; a lease released (slots/rows.py) --------------------

SELECT_WAITER_LIMITS = "SELECT limit_name FROM waiters WHERE waiter_id = :w"
DELETE_WAITER = "DELETE FROM waiters WHERE waiter_id = :w RETURNING limit_name"


def delete_waiter_on(marks: str) -> str:
    """Delete a waiter's rows on the limits named by ``marks``; the limits they were on."""
    return (
        f"DELETE FROM waiters WHERE waiter_id = :w AND limit_name IN ({marks}) RETURNING limit_name"
    )


DELETE_LEASE = (
    "DELETE FROM leases WHERE lease_id = :id RETURNING limit_name, slots, created,"
    " expires, holder_kind, holder_id"
)
# A lease's slots given back to one limit; how many wait there.
RELEASE_SLOTS = (
    "UPDATE limits SET active_slots = CASE WHEN active_slots > :n"
    " THEN active_slots - :n ELSE 0 END, releases = releases + 1,"
    " total_hold_seconds = total_hold_seconds + :held WHERE name = :name"
    " RETURNING (SELECT COUNT(*) FROM waiters w WHERE w.limit_name = :name)"
)

# -- SQLite's one-statement grant (slots/fast.py) --------------------------------------

# Room on a plain active limit, nobody ahead: the slots taken; else nothing written.
FAST_GRANT = (
    "UPDATE limits SET active_slots = active_slots + :n, grants = grants + 1,"
    " decayed_at = :now WHERE name = :name AND active AND slot_decay_per_second = 0"
    " AND active_slots + :n <= slot_limit AND NOT EXISTS (SELECT 1 FROM waiters w"
    " WHERE w.limit_name = :name AND w.expires > :now AND w.priority >= :p)"
    " RETURNING name"
)

# -- slots: acquire, wait, release, renew (slots/engine.py) ----------------------------

NEXT_SEQUENCE_VALUE = "UPDATE sequences SET value = value + 1 WHERE name = :name RETURNING value"
INSERT_SEQUENCE = (
    "INSERT INTO sequences (name, value) VALUES (:name, 0) ON CONFLICT (name) DO NOTHING"
)
# A queued request's place (its rows on each limit).
SELECT_WAITER_PLACE = "SELECT seq, created, limit_name FROM waiters WHERE waiter_id = :w"
# A queued request's rows kept: expiry moved on, wake address updated if given.
REFRESH_WAITER = (
    "UPDATE waiters SET expires = :e, wake_address = COALESCE(:addr, wake_address)"
    " WHERE waiter_id = :w"
)
INSERT_WAITER = (
    "INSERT INTO waiters (seq, limit_name, waiter_id, slots, priority, holder_kind,"
    " holder_id, pid, host, proc_start, wake_address, created, expires, node, mode,"
    " lease_seconds, request_names) VALUES (:seq, :name, :w, :slots, :p, :kind,"
    " :holder, :pid, :host, :start, :addr, :now, :expires, :node, :mode, :seconds,"
    " :asked)"
)
COUNT_DENIAL = "UPDATE limits SET denials = denials + 1, queued = queued + 1 WHERE name = :name"
SELECT_HANDOFF_EXISTS = "SELECT 1 FROM handoffs WHERE waiter_id = :w"


def refresh_waiters(marks: str, skip_locked: str) -> str:
    """Move on the expiry of the live waiters named by ``marks`` nobody else has locked."""
    return (
        "UPDATE waiters SET expires = :e WHERE waiter_id IN (SELECT waiter_id"
        f" FROM waiters WHERE waiter_id IN ({marks})"
        f" AND expires > :now ORDER BY waiter_id{skip_locked})"
    )


SELECT_LEASE_LIMITS = "SELECT limit_name FROM leases WHERE lease_id = :id"
# The grant of a lease handed to a waiter, which read it and left it in place.
DELETE_HANDOFF_OF_LEASE = "DELETE FROM handoffs WHERE waiter_id = :w AND lease_id = :id"


def renew_leases(marks: str) -> str:
    """Extend the leases named by ``marks`` not reaped; the ids of their rows extended."""
    return (
        f"UPDATE leases SET expires = :e WHERE lease_id IN ({marks})"
        " AND expires > :doomed RETURNING lease_id"
    )


# -- direct handoff (slots/handoff.py) --------------------------------------------------

# The waiters at the head of the queue of limit ``:name``, in grant order (the first
# ``:depth`` of them).
SELECT_QUEUE_HEAD = (
    "SELECT waiter_id FROM waiters WHERE limit_name = :name AND expires > :now"
    " ORDER BY priority DESC, seq"
)
SELECT_QUEUE_HEAD_TO_DEPTH = SELECT_QUEUE_HEAD + " LIMIT :depth"
# The rows of the waiters at the head of one limit's queue.
SELECT_HEAD_WAITERS = (
    "SELECT " + WAITER_COLUMNS + " FROM waiters WHERE expires > :now AND waiter_id IN"
    " (" + SELECT_QUEUE_HEAD + ")"
)
SELECT_HEAD_WAITERS_TO_DEPTH = (
    "SELECT " + WAITER_COLUMNS + " FROM waiters WHERE expires > :now AND waiter_id IN"
    " (" + SELECT_QUEUE_HEAD_TO_DEPTH + ")"
)
_SELECT_LIVE_WAITERS_IN = (
    "SELECT " + WAITER_COLUMNS + " FROM waiters WHERE expires > :now AND waiter_id IN ("
)


def select_live_waiters(marks: str) -> str:
    """The live rows of the waiters named by ``marks``."""
    return f"{_SELECT_LIVE_WAITERS_IN}{marks})"


INSERT_HANDOFF = (
    "INSERT INTO handoffs (waiter_id, lease_id, names, slots, mode, lease_seconds,"
    " lease_expires, waited, created, expires) VALUES (:w, :lease, :names, :slots,"
    " :mode, :seconds, :lease_expires, :waited, :now, :forget)"
)
# The grant left for a waiter, taken: deleting it is what makes it the waiter's.
TAKE_HANDOFF = (
    "DELETE FROM handoffs WHERE waiter_id = :w RETURNING lease_id, names, slots, mode,"
    " lease_seconds, lease_expires, waited"
)
SELECT_HANDOFF = (
    "SELECT lease_id, names, slots, mode, lease_seconds, lease_expires, waited"
    " FROM handoffs WHERE waiter_id = :w"
)
# When a lease expires (its rows' earliest); DOOMED once it was reaped.
SELECT_LEASE_EXPIRES = "SELECT MIN(expires) FROM leases WHERE lease_id = :id"
# The grant left for a waiter, given back.
GIVE_BACK_HANDOFF = "DELETE FROM handoffs WHERE waiter_id = :w RETURNING lease_id, names, slots"
# Rate tokens a waiter never used, given back.
RETURN_TOKENS = "UPDATE limits SET active_slots = :v, decayed_at = :now WHERE name = :name"
# The live waiters of a limit that ask more slots than its new limit.
SELECT_UNFIT_WAITERS = (
    "SELECT DISTINCT waiter_id, wake_address, host, pid FROM waiters"
    " WHERE limit_name = :name AND expires > :now AND slots > :limit"
)
DELETE_WAITERS_ON_LIMIT = (
    "DELETE FROM waiters WHERE limit_name = :name RETURNING waiter_id, slots, mode,"
    " created, wake_address, host, pid, expires"
)


def select_queued_waiters(marks: str) -> str:
    """Those of the waiters named by ``marks`` still queued somewhere."""
    return f"SELECT DISTINCT waiter_id FROM waiters WHERE waiter_id IN ({marks})"


SELECT_HANDOFF_NAMES = "SELECT names FROM handoffs WHERE waiter_id = :w"

# -- reaping (slots/reaper.py) ----------------------------------------------------------

# Limits with expired leases or waiters, or leases or waiters of node :node.
SELECT_LIMITS_TO_SWEEP = (
    "SELECT DISTINCT limit_name FROM leases WHERE expires <= :now"
    " OR node = :node UNION SELECT DISTINCT limit_name FROM waiters"
    " WHERE expires <= :now OR node = :node"
)
SELECT_STALE_HANDOFF = "SELECT 1 FROM handoffs WHERE expires <= :now LIMIT 1"
DELETE_STALE_HANDOFFS = "DELETE FROM handoffs WHERE expires <= :now"
# A limit's queue count as its waiter rows have it.
_QUEUED_COUNT = "(SELECT COUNT(*) FROM waiters w WHERE w.limit_name = limits.name)"
# The limits whose queue count disagrees with their waiter rows.
SELECT_DRIFTED_QUEUE_COUNTS = "SELECT name FROM limits WHERE queued <> " + _QUEUED_COUNT
_RECOUNT_QUEUED = "UPDATE limits SET queued = " + _QUEUED_COUNT + " WHERE name IN ("


def recount_queued(marks: str) -> str:
    """Set the queue count of the limits named by ``marks`` from their waiter rows."""
    return f"{_RECOUNT_QUEUED}{marks})"


# Either every row on the limits (their processes are judged) or the expired ones only.
_EXPIRED = " AND expires <= :now"


def select_reapable_leases(marks: str, *, every: bool) -> str:
    """The lease rows on the limits named by ``marks``: ``every`` one, or the expired."""
    query = (
        "SELECT lease_id, limit_name, slots, pid, node, proc_start, expires, holder_kind,"
        f" holder_id FROM leases WHERE limit_name IN ({marks})"
    )
    return query if every else query + _EXPIRED


def select_reapable_waiters(marks: str, *, every: bool) -> str:
    """The waiter rows on the limits named by ``marks``: ``every`` one, or the expired."""
    query = (
        "SELECT waiter_id, limit_name, pid, node, proc_start, expires FROM waiters"
        f" WHERE limit_name IN ({marks})"
    )
    return query if every else query + _EXPIRED


DELETE_LEASE_ON_LIMIT = "DELETE FROM leases WHERE lease_id = :id AND limit_name = :name"
# A reaped lease's slots taken off one limit.
REAP_SLOTS = (
    "UPDATE limits SET active_slots = CASE WHEN active_slots > :n"
    " THEN active_slots - :n ELSE 0 END, expiries = expiries + 1"
    " WHERE name = :name"
)
# A lease's remaining rows marked reaped (expires DOOMED): their owner can no longer renew.
DOOM_LEASE = "UPDATE leases SET expires = :doomed WHERE lease_id = :id"

# -- the slot waits of ended runs (slots/run_waits.py) ---------------------------------

# A task run's state, and its flow run's.
SELECT_TASK_RUN_STATES = (
    "SELECT t.state_type, t.flow_run_id, f.state_type FROM task_runs t"
    " LEFT JOIN flow_runs f ON f.id = t.flow_run_id WHERE t.id = :id"
)
#: The holders that are task runs of the flow run ``:run``.
TASK_RUNS_OF_FLOW_RUN = "holder_id IN (SELECT id FROM task_runs WHERE flow_run_id = :run)"


def task_runs_in(marks: str) -> str:
    """The holders that are the task runs named by ``marks``."""
    return f"holder_id IN ({marks})"


def select_task_run_waiters(holders: str) -> str:
    """The waiter rows of the task runs ``holders`` picks (``TASK_RUNS_OF_FLOW_RUN`` ...)."""
    return (
        "SELECT waiter_id, limit_name, wake_address, host, pid, holder_id, slots FROM waiters"
        f" WHERE holder_kind = 'task_run' AND {holders}"
    )


def select_task_run_handoffs(holders: str) -> str:
    """The grants handed to the task runs ``holders`` picks, not taken yet."""
    return (
        "SELECT h.waiter_id, h.names FROM handoffs h JOIN leases l ON l.lease_id = h.lease_id"
        f" WHERE l.holder_kind = 'task_run' AND l.{holders}"
    )


# -- PostgreSQL's slot functions (slots/pg.py, pg_acquire.py) --------------------------

CALL_HAND_OFF = "SELECT headway_hand_off(:names::text[], :now::float8, :ttl::float8)"
CALL_TAKE = "SELECT headway_take(:w::text, :names::text[])"
CALL_RELEASE = "SELECT headway_release(:id::text, :now::float8, :ttl::float8)"
# Whether a lease is there (a release whose answer was lost did not commit).
SELECT_LEASE_EXISTS = "SELECT 1 FROM leases WHERE lease_id = :id"
CALL_ACQUIRE = (
    "SELECT headway_acquire(:names::text[], :occupy::integer, :mode::text, :priority::integer,"
    " :kind::text, :holder::text, :pid::integer, :host::text, :node::text, :start::bigint,"
    " :seconds::float8, :now::float8, :w::text, :new::boolean, :may::boolean, :addr::text,"
    " :lease::text, :strict::boolean, :my_node::text, :probe::boolean,"
    " :dead_leases::text[], :dead_waiters::text[], :ttl::float8)"
)
# A lease's rows (an acquire whose answer was lost granted it).
SELECT_LEASE_EXPIRIES = "SELECT limit_name, expires FROM leases WHERE lease_id = :id"
SELECT_WAITER_EXISTS = "SELECT 1 FROM waiters WHERE waiter_id = :w"
SELECT_LIMITS_ACTIVE_ANY = "SELECT name, active FROM limits WHERE name = ANY(:names::text[])"
