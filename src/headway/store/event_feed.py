"""The event feed's two sources: rows of ``events``, and state changes read from ``states``.

State changes are not copied into ``events`` (``states`` already holds every
one): :meth:`headway.store.events.Events.read_events` reads both, with these
queries, inside one read transaction, and merges them in time order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from headway.core.events import Event
from headway.store.db import Row, Tx
from headway.store.queries import events as q


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


def _state_event(row: Row) -> Event:
    # row: id, run_id, type, name, message, timestamp
    detail = row[3] if not row[4] else f"{row[3]}: {row[4]}"
    return Event(f"s{row[0]}", _dt(row[5]), f"state.{row[2]}", row[1], None, None, None, detail)


def _event(row: Row) -> Event:
    # row: id, timestamp, kind, run_id, limit_name, slots, seconds, detail
    return Event(
        f"e{row[0]}",
        _dt(row[1]),
        row[2],
        row[3],
        row[4],
        None if row[5] is None else int(row[5]),
        None if row[6] is None else float(row[6]),
        row[7],
    )


def event_rows(
    tx: Tx,
    run_id: str | None,
    limit_name: str | None,
    since: float | None,
    kind: str | None,
    after: int,
    limit: int,
    tail: bool,
) -> list[Event]:
    """Rows of ``events`` that match: the newest ``limit`` (``tail``), or those after ``after``."""
    if kind is not None and kind.startswith("state"):
        return []
    where = [q.FEED_AFTER_ID]
    params: dict[str, Any] = {"after": after, "n": limit}
    if run_id is not None:
        where.append(q.FEED_OF_RUN)
        params["run"] = run_id
    if limit_name is not None:
        where.append(q.EVENT_OF_LIMIT)
        params["name"] = limit_name
    if since is not None:
        where.append(q.FEED_SINCE)
        params["since"] = since
    if kind:
        where.append(q.EVENT_KIND_STARTS_WITH)
        params.update(klen=len(kind), kind=kind)
    # Only a time filter: the newest are found through the time index, not a scan.
    by_time = tail and since is not None and not (run_id or limit_name)
    rows = tx.execute(q.select_events(where, by_time=by_time, newest_first=tail), params)
    return [_event(r) for r in rows]


def state_rows(
    tx: Tx,
    run_id: str | None,
    limit_name: str | None,
    since: float | None,
    kind: str | None,
    after: int,
    limit: int,
    tail: bool,
) -> list[Event]:
    """State changes that match, as events: flow runs', or one run's (and its task runs')."""
    if limit_name is not None or (kind and not ("state".startswith(kind) or kind[:5] == "state")):
        return []
    params: dict[str, Any] = {"after": after, "n": limit}
    if run_id is not None:
        where = [q.FEED_OF_RUN]
        params["run"] = run_id
    else:
        where = [q.STATE_OF_FLOW_RUNS]
    if after:
        where.append(q.FEED_AFTER_ID)
    if since is not None:
        where.append(q.FEED_SINCE)
        params["since"] = since
    if kind and kind.startswith("state.") and len(kind) > 6:
        where.append(q.STATE_OF_TYPE)
        params["type"] = kind[6:]
    by_time = run_id is None and tail
    rows = tx.execute(q.select_states(where, by_time=by_time, newest_first=tail), params)
    return [_state_event(r) for r in rows]


__all__ = ["event_rows", "state_rows"]
