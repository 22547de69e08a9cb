"""The limits' rows: created, read, changed, reset and deleted, and locked by the slot engine.

The statements of the ``Limits`` part (``store/slots/limits.py``), and the
locks and reads of limit rows that every slot operation shares
(``store/slots/rows.py``). What a limit's row has to do with leases, waiters
and handoffs (a grant, a release, a reap) is in ``queries/slots.py``.
"""

from __future__ import annotations

#: A limit as a decision reads it (``slots/rows.py``: ``state_of``).
LIMIT_COLUMNS = (
    "name, slot_limit, active, active_slots, slot_decay_per_second, decayed_at, created,"
    " grants, denials"
)
#: A limit as a record (``slots/rows.py``: ``limit_of``): ``LIMIT_COLUMNS``, then its id and
#: last change.
LIMIT_RECORD_COLUMNS = LIMIT_COLUMNS + ", id, updated"

# -- locks and reads of limit rows, inside the caller's transaction (slots/rows.py) ----

SELECT_LIMIT = "SELECT " + LIMIT_COLUMNS + " FROM limits WHERE name = :name"
SELECT_LIMIT_RECORD = "SELECT " + LIMIT_RECORD_COLUMNS + " FROM limits WHERE name = :name"
_SELECT_LIMITS_IN = "SELECT " + LIMIT_COLUMNS + " FROM limits WHERE name IN ("


def lock_limits(marks: str, for_update: str) -> str:
    """Lock the limits named by ``marks`` in name order (``for_update``: the dialect's)."""
    return f"SELECT name FROM limits WHERE name IN ({marks}) ORDER BY name{for_update}"


def lock_limit(for_update: str) -> str:
    """Lock and read the limit ``:name`` (``for_update``: the dialect's)."""
    return SELECT_LIMIT + for_update


def select_limits(marks: str) -> str:
    """The limits named by ``marks`` (those that exist), as a decision reads them."""
    return f"{_SELECT_LIMITS_IN}{marks})"


def try_lock_limits(marks: str, skip_locked: str) -> str:
    """Lock those of the limits named by ``marks`` nobody else holds (``skip_locked``)."""
    return f"SELECT name FROM limits WHERE name IN ({marks}) ORDER BY name{skip_locked}"


def select_limits_active(marks: str) -> str:
    """Whether each limit named by ``marks`` (those that exist) is active."""
    return f"SELECT name, active FROM limits WHERE name IN ({marks})"


# -- the Limits part: create, read, change, delete, reset, inspect (slots/limits.py) ---

INSERT_LIMIT = (
    "INSERT INTO limits (id, name, slot_limit, active, active_slots,"
    " slot_decay_per_second, decayed_at, created, updated) VALUES (:id, :name, :limit,"
    " :active, :slots, :decay, :now, :now, :now) ON CONFLICT (name) DO NOTHING"
)
# Limit records, each with its count of live waiters; then the filter.
_LIMITS_WITH_WAITERS = (
    "SELECT " + LIMIT_RECORD_COLUMNS + ", (SELECT COUNT(*) FROM waiters w"
    " WHERE w.limit_name = limits.name AND w.expires > :now)"
    " FROM limits "
)
SELECT_LIMIT_WITH_WAITERS = _LIMITS_WITH_WAITERS + "WHERE name = :name" + " ORDER BY name"
SELECT_LIMITS_WITH_WAITERS = _LIMITS_WITH_WAITERS + " ORDER BY name"
SELECT_LIMITS_WITH_WAITERS_BY_PREFIX = (
    _LIMITS_WITH_WAITERS + "WHERE substr(name, 1, :plen) = :prefix" + " ORDER BY name"
)


def update_limit(*, limit: bool, active: bool, decay: bool) -> str:
    """Set a limit's occupancy (decayed to ``:now``), and those of its settings that change."""
    sets = "updated = :now, active_slots = :slots, decayed_at = :now"
    if limit:
        sets += ", slot_limit = :limit"
    if active:
        sets += ", active = :active"
    if decay:
        sets += ", slot_decay_per_second = :decay"
    return f"UPDATE limits SET {sets} WHERE name = :name"


SELECT_HOLDER_COUNT = "SELECT COUNT(DISTINCT lease_id) FROM leases WHERE limit_name = :name"
SELECT_LEASE_IDS_ON_LIMIT = "SELECT DISTINCT lease_id FROM leases WHERE limit_name = :name"
DELETE_LEASES_ON_LIMIT = "DELETE FROM leases WHERE limit_name = :name"
DELETE_LIMIT = "DELETE FROM limits WHERE name = :name"
RESET_LIMIT = (
    "UPDATE limits SET active_slots = 0, decayed_at = :now, updated = :now WHERE name = :name"
)
# A limit's holders, oldest first.
SELECT_LIMIT_HOLDERS = (
    "SELECT lease_id, slots, holder_kind, holder_id, pid, host, created, expires"
    " FROM leases WHERE limit_name = :name ORDER BY created, lease_id"
)
# A limit's live waiters, in grant order.
SELECT_LIMIT_WAITERS = (
    "SELECT seq, slots, priority, holder_kind, holder_id, pid, host, created"
    " FROM waiters WHERE limit_name = :name AND expires > :now"
    " ORDER BY priority DESC, seq"
)

# -- the limits of pools, queues and deployments (slots/limits.py) --------------------


def select_limit_values(marks: str) -> str:
    """The value and whether active of each limit named by ``marks`` (those that exist)."""
    return f"SELECT name, slot_limit, active FROM limits WHERE name IN ({marks})"


def lock_limit_value(for_update: str) -> str:
    """Lock and read the value of the limit ``:n`` (``for_update``: the dialect's)."""
    return "SELECT slot_limit, active FROM limits WHERE name = :n" + for_update


SELECT_LIMIT_NAMES_BY_PREFIX = "SELECT name FROM limits WHERE substr(name, 1, :plen) = :prefix"
SELECT_LIMIT_EXISTS = "SELECT 1 FROM limits WHERE name = :n"
SELECT_LIMIT_HELD = "SELECT 1 FROM leases WHERE limit_name = :n LIMIT 1"
