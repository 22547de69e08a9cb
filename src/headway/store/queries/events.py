"""The SQL of events, histograms and limit counters (``store/events.py``, ``store/event_feed.py``).

Events are rows of ``events``; the feed reads them beside the state changes of
``states`` (never copied into ``events``). Histograms are bucket counters that
only grow. A limit's counters are read from its row, with its live waiters and
leases. The rows the limits themselves are made of are the slot engine's.
"""

from __future__ import annotations

from collections.abc import Sequence

# -- Writing events ------------------------------------------------------------

# One event; ``:run`` is a run's id or NULL.
INSERT_EVENT = (
    "INSERT INTO events (timestamp, kind, run_id, limit_name, slots, seconds, detail)"
    " VALUES (:ts, :kind, :run, :name, :slots, :seconds, :detail)"
)

# -- Histograms ----------------------------------------------------------------

# Adds :c observations totalling :v to one bucket (made at its first).
ADD_TO_HISTOGRAM_BUCKET = (
    "INSERT INTO histograms (metric, label, le, count, total) VALUES (:m, :l, :le, :c, :v)"
    " ON CONFLICT (metric, label, le) DO UPDATE SET count = histograms.count + :c,"
    " total = histograms.total + :v"
)
SELECT_HISTOGRAM_BUCKETS = (
    "SELECT label, le, count, total FROM histograms WHERE metric = :m ORDER BY label, le"
)

# -- The feed: where it starts -------------------------------------------------

# The newest ids of the feed's two sources: a page of the newest events ends there.
SELECT_LAST_EVENT_ID = "SELECT COALESCE(MAX(id), 0) FROM events"
SELECT_LAST_STATE_ID = "SELECT COALESCE(MAX(id), 0) FROM states"

# -- The feed: its conditions, joined with AND ---------------------------------

# Both sources (``events`` and ``states`` name these columns alike).
FEED_AFTER_ID = "id > :after"
FEED_OF_RUN = "run_id = :run"
FEED_SINCE = "timestamp >= :since"
# Rows of ``events`` only.
EVENT_OF_LIMIT = "limit_name = :name"
EVENT_KIND_STARTS_WITH = "substr(kind, 1, :klen) = :kind"
# Rows of ``states`` only. Flow runs' written as a literal, so that the partial
# index of flow-run states serves the query.
STATE_OF_FLOW_RUNS = "run_kind = 'flow'"
STATE_OF_TYPE = "type = :type"


def select_events(where: Sequence[str], *, by_time: bool, newest_first: bool) -> str:
    """The feed's rows of ``events`` meeting every condition of ``where``, at most ``:n``.

    Ordered by ``timestamp`` (``by_time``) or by ``id``; ``newest_first`` descending.
    """
    return (
        "SELECT id, timestamp, kind, run_id, limit_name, slots, seconds, detail FROM events"
        f" WHERE {' AND '.join(where)} ORDER BY {'timestamp' if by_time else 'id'}"
        f" {'DESC' if newest_first else ''} LIMIT :n"
    )


def select_states(where: Sequence[str], *, by_time: bool, newest_first: bool) -> str:
    """The feed's state changes (rows of ``states``) meeting every condition of ``where``.

    At most ``:n``, ordered as :func:`select_events` orders events.
    """
    return (
        "SELECT id, run_id, type, name, message, timestamp FROM states"
        f" WHERE {' AND '.join(where)} ORDER BY {'timestamp' if by_time else 'id'}"
        f" {'DESC' if newest_first else ''} LIMIT :n"
    )


# -- Pruning -------------------------------------------------------------------

# The oldest :n events from before :cut.
DELETE_EVENTS_BEFORE = (
    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE timestamp < :cut"
    " ORDER BY timestamp LIMIT :n)"
)

# -- Limit counters ------------------------------------------------------------

#: A limit's counters, then its live waiters, its leases and the slot-seconds
#: these have held so far: the row ``events.limit_stats_of`` reads (from ``limits``).
LIMIT_STATS_COLUMNS = (
    "name, slot_limit, active, active_slots, slot_decay_per_second,"
    " decayed_at, created, grants, denials, expiries, releases, total_wait_seconds,"
    " total_hold_seconds, (SELECT COUNT(*) FROM waiters w WHERE w.limit_name ="
    " limits.name AND w.expires > :now), (SELECT COUNT(*) FROM leases l"
    " WHERE l.limit_name = limits.name), (SELECT COALESCE(SUM((:now - l.created)"
    " * l.slots), 0) FROM leases l WHERE l.limit_name = limits.name)"
)
SELECT_LIMIT_STATS = "SELECT " + LIMIT_STATS_COLUMNS + " FROM limits ORDER BY name"
SELECT_LIMIT_STATS_BY_PREFIX = (
    "SELECT " + LIMIT_STATS_COLUMNS + " FROM limits WHERE substr(name, 1, :plen) = :prefix"
    " ORDER BY name"
)

# -- Utilization ---------------------------------------------------------------

# The limits that hold slots (rate limits decay, and hold none).
SELECT_SLOT_LIMITS = "SELECT name, slot_limit FROM limits WHERE slot_decay_per_second = 0"


def select_slot_limits_named(placeholders: str) -> str:
    """:data:`SELECT_SLOT_LIMITS` of the names ``placeholders`` (``:n0, :n1, ...``) list."""
    return SELECT_SLOT_LIMITS + f" AND name IN ({placeholders})"


# Where the window's events start: the id of the first one at or after :since.
SELECT_FIRST_EVENT_ID_SINCE = "SELECT MIN(id) FROM events WHERE timestamp >= :since"
# Grants (each says how long it waited) and releases (how long they held), from :first.
SELECT_GRANTS_AND_RELEASES_FROM = (
    "SELECT limit_name, kind, timestamp, slots, seconds FROM events"
    " WHERE id >= :first AND kind IN ('slot.granted', 'slot.released')"
)
SELECT_LEASE_HOLDS = "SELECT limit_name, created, slots FROM leases"
SELECT_WAITER_STARTS = "SELECT limit_name, created FROM waiters"
