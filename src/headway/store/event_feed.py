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
    where = ["id > :after"]
    params: dict[str, Any] = {"after": after, "n": limit}
    if run_id is not None:
        where.append("run_id = :run")
        params["run"] = run_id
    if limit_name is not None:
        where.append("limit_name = :name")
        params["name"] = limit_name
    if since is not None:
        where.append("timestamp >= :since")
        params["since"] = since
    if kind:
        where.append("substr(kind, 1, :klen) = :kind")
        params.update(klen=len(kind), kind=kind)
    # Only a time filter: the newest are found through the time index, not a scan.
    order = "timestamp" if tail and since is not None and not (run_id or limit_name) else "id"
    rows = tx.execute(
        "SELECT id, timestamp, kind, run_id, limit_name, slots, seconds, detail FROM events"
        f" WHERE {' AND '.join(where)} ORDER BY {order} {'DESC' if tail else ''} LIMIT :n",
        params,
    )
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
        where = ["run_id = :run"]
        params["run"] = run_id
    else:
        # A literal, so the partial index of flow-run states serves the query.
        where = ["run_kind = 'flow'"]
    if after:
        where.append("id > :after")
    if since is not None:
        where.append("timestamp >= :since")
        params["since"] = since
    if kind and kind.startswith("state.") and len(kind) > 6:
        where.append("type = :type")
        params["type"] = kind[6:]
    order = "id" if run_id is not None or not tail else "timestamp"
    rows = tx.execute(
        "SELECT id, run_id, type, name, message, timestamp FROM states"
        f" WHERE {' AND '.join(where)} ORDER BY {order} {'DESC' if tail else ''} LIMIT :n",
        params,
    )
    return [_state_event(r) for r in rows]


__all__ = ["event_rows", "state_rows"]
