"""``headway events``: slot grants, denials, releases, expiries, reaps and state changes.

``--follow`` keeps printing new events (asking the store every ``--interval``)
until Ctrl-C; with ``-o json`` it prints one JSON object per line.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from headway.cli.output import check_output_format
from headway.cli.why import client, console, duration, poll_interval, sleep, until_interrupted
from headway.exceptions import ValidationError

NAME = "events"

app = typer.Typer(
    help="Events: slot grants, denials, releases, expiries, reaps, state changes.",
    invoke_without_command=True,
)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str) -> datetime:
    """``10m``, ``2h``, ``30s``, ``1d`` ago, or an ISO 8601 time (UTC unless it says)."""
    text = value.strip()
    found = _RELATIVE.match(text)
    if found:
        return datetime.now(UTC) - timedelta(seconds=float(found[1]) * _UNITS[found[2]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"--since {value!r}: expected a duration like 10m, 2h, 30s, 1d or an ISO time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def event_json(event: Any) -> dict[str, Any]:
    """The JSON of one event."""
    return {
        "id": event.id,
        "timestamp": event.timestamp.isoformat(),
        "kind": event.kind,
        "run_id": event.run_id,
        "limit": event.limit_name,
        "slots": event.slots,
        "seconds": event.seconds,
        "detail": event.detail,
    }


def event_line(event: Any) -> str:
    """One event as a line of text."""
    when = event.timestamp.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    parts = [when, f"{event.kind:<16}"]
    if event.limit_name:
        parts.append(f"limit={event.limit_name}")
    if event.slots is not None:
        parts.append(f"slots={event.slots}")
    if event.seconds is not None:
        label = {"slot.granted": "waited", "slot.released": "held"}.get(event.kind, "seconds")
        parts.append(f"{label}={duration(event.seconds)}")
    if event.run_id:
        parts.append(f"run={event.run_id}")
    if event.detail:
        parts.append(event.detail)
    return "  ".join(parts)


@app.callback()
def events(
    ctx: typer.Context,
    run: str | None = typer.Option(None, "--run", help="Only events of this flow or task run."),
    limit: str | None = typer.Option(None, "--limit", help="Only events of this limit."),
    since: str | None = typer.Option(
        None, "--since", help="Only events since then: 10m, 2h, 1d ago, or an ISO time."
    ),
    kind: str | None = typer.Option(
        None, "--kind", help="Only kinds starting with this: slot, slot.granted, state, lease."
    ),
    count: int = typer.Option(100, "--count", "-n", help="How many of the newest events."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    interval: float = typer.Option(0.5, "--interval", help="Seconds between polls (--follow)."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """Print recorded events, oldest first (the newest --count of them)."""
    if ctx.invoked_subcommand is not None:
        return
    check_output_format(output)
    if not 1 <= count <= 10_000:
        raise ValidationError(f"--count must be between 1 and 10000, got {count}")
    pause = poll_interval(interval)
    filters: dict[str, Any] = {
        "run_id": run,
        "limit_name": limit,
        "since": None if since is None else parse_since(since),
        "kind": kind,
    }
    source = client()
    page = source.read_events(**filters, limit=count)
    if output == "json" and not follow:
        typer.echo(json.dumps([event_json(e) for e in page.events], indent=2))
        return

    def show(items: Any) -> None:
        for e in items:
            typer.echo(json.dumps(event_json(e)) if output == "json" else event_line(e))

    show(page.events)
    if not follow:
        if not page.events:
            console().print("No events match." if any(filters.values()) else "No events yet.")
        return
    cursor = page.cursor
    with until_interrupted():
        while True:
            sleep(pause)
            page = source.read_events(**filters, after=cursor, limit=1000)
            show(page.events)
            cursor = page.cursor
