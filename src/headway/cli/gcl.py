"""``headway gcl`` (alias ``global-concurrency-limit``): limits for ``concurrency()``.

Every limit lives in one engine, whatever its scope: ``ls`` lists them all
(task-tag limits appear as ``tag:<tag>``). Bad input prints one line and exits
2 without changing anything (the checks live in the store, one place).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import typer

from headway.cli.output import check_output_format
from headway.exceptions import ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "gcl"
NAMES = (NAME, "global-concurrency-limit")
#: Prefect's plural spelling, accepted and left out of the help.
ALIASES = ("global-concurrency-limits",)

app = typer.Typer(
    help="Global concurrency and rate limits: create, list, inspect, change, delete.",
    no_args_is_help=True,
)


def _client() -> Any:
    from headway.client.base import get_client

    return get_client()


def _console() -> Any:
    from rich.console import Console

    # Piped output has no terminal width: do not cut names at 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _slots(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def limit_json(limit: Any) -> dict[str, Any]:
    """The JSON of a limit (``ls``)."""
    return {
        "id": limit.id,
        "name": limit.name,
        "limit": limit.limit,
        "active": limit.active,
        "active_slots": limit.active_slots,
        "exact_active_slots": limit.exact_active_slots,
        "slot_decay_per_second": limit.slot_decay_per_second,
        "waiters": limit.waiters,
        "grants": limit.grants,
        "denials": limit.denials,
        "scope": limit.scope,
        "created": _iso(limit.created),
        "updated": _iso(limit.updated),
    }


def detail_json(detail: Any) -> dict[str, Any]:
    """The JSON of a limit with its holders and waiters (``inspect``)."""
    out = limit_json(detail.limit)
    name = detail.limit.name
    out["holders"] = [
        {
            "holder": _holder(lease.holder),
            "holder_kind": lease.holder.kind,
            "holder_id": lease.holder.id,
            "pid": lease.holder.pid,
            "host": lease.holder.host,
            "slots": lease.slots.get(name, 0),
            "since": _iso(lease.created),
            "expires": _iso(lease.expires),
            "lease_id": lease.id,
        }
        for lease in detail.holders
    ]
    out["waiters"] = [
        {
            "position": waiter.position,
            "slots": waiter.slots,
            "priority": waiter.priority,
            "since": _iso(waiter.since),
            "holder": _holder(waiter.holder),
            "pid": waiter.holder.pid,
            "host": waiter.holder.host,
        }
        for waiter in detail.waiters
    ]
    used = detail.utilization
    out["utilization_while_waiting"] = (
        None
        if used is None
        else {
            "share": used.share,
            "waiting_seconds": round(used.waiting_seconds, 3),
            "window_seconds": used.window_seconds,
        }
    )
    return out


def utilization_line(detail: Any) -> str | None:
    """``inspect``'s line on how much of the limit was held while anyone waited."""
    used = detail.utilization
    if used is None:
        return None  # a rate limit: its slots are not held
    window = f"last {used.window_seconds:g} s"
    if used.share is None:
        return f"utilization while waiting ({window}): nobody waited"
    return (
        f"utilization while waiting ({window}): {used.share * 100:.0f} % of its slots"
        f" held while requests waited ({used.waiting_seconds:.1f} s)"
    )


def closed_text(name: str) -> str:
    """What a limit of 0 means (a kill switch) for the limit ``name``, by its scope."""
    if name.startswith(("pool:", "queue:", "deployment:")):
        return "nothing is admitted; no runs start until it is raised (they wait)"
    if name.startswith("tag:"):
        return "nothing is admitted; task runs with this tag fail at once without running"
    return "nothing is admitted; every request fails at once until it is raised"


def _holder(holder: Any) -> str:
    return holder.kind if not holder.id else f"{holder.kind}:{holder.id}"


def _stats_json(stat: Any) -> dict[str, Any]:
    hold = stat.average_hold_seconds
    return {
        "average_occupancy": stat.average_occupancy,
        "average_hold_seconds": hold,
        "average_wait_seconds": stat.average_wait_seconds,
        "expiries": stat.expiries,
        "releases": stat.releases,
    }


def print_limits(
    limits: list[Any],
    output: str,
    *,
    title: str,
    first: str = "name",
    stats: dict[str, Any] | None = None,
) -> None:
    """``ls`` output: a table, or JSON; with ``stats`` (name -> LimitStats), their averages."""
    stats = stats or {}
    if output == "json":
        rows = []
        for lim in limits:
            row = limit_json(lim)
            if lim.name in stats:
                row.update(_stats_json(stats[lim.name]))
            rows.append(row)
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=title)
    columns = [first, "limit", "active slots", "waiters", "enabled", "decay/s"]
    if stats:
        columns += ["grants", "denials", "avg occupancy"]
    for column in columns:
        table.add_column(column, justify="left" if column == first else "right")
    for lim in limits:
        label = lim.name[len("tag:") :] if first == "tag" else lim.name
        cells = [
            label,
            str(lim.limit),
            _slots(lim.active_slots),
            str(lim.waiters),
            "yes" if lim.active else "no",
            f"{lim.slot_decay_per_second:g}" if lim.slot_decay_per_second else "-",
        ]
        if stats:
            stat = stats.get(lim.name)
            occupancy = "-" if stat is None else f"{stat.average_occupancy:.2f}"
            cells += [str(lim.grants), str(lim.denials), occupancy]
        table.add_row(*cells)
    console = _console()
    if limits:
        console.print(table)
    else:
        console.print("No limits.")


def print_detail(detail: Any, output: str) -> None:
    """``inspect`` output: the limit, who holds it and who waits, in grant order."""
    if output == "json":
        typer.echo(json.dumps(detail_json(detail), indent=2))
        return
    from rich.table import Table

    lim = detail.limit
    console = _console()
    decay = f", decays {lim.slot_decay_per_second:g}/s" if lim.slot_decay_per_second else ""
    console.print(
        f"[bold]{lim.name}[/bold]: {_slots(lim.active_slots)}/{lim.limit} slots taken,"
        f" {'enabled' if lim.active else 'disabled'}{decay}; {lim.grants} grants,"
        f" {lim.denials} waits"
    )
    console.print(
        f"id {lim.id or '-'}; created {_when(lim.created)}, updated {_when(lim.updated)}",
        highlight=False,
    )
    if lim.limit == 0:
        console.print(
            f"limit is 0: {closed_text(lim.name)}"
            if lim.active
            else "limit is 0, but disabled: not applied"
        )
    line = utilization_line(detail)
    if line is not None:
        console.print(line)
    holders = Table(title="holders")
    for column in ("holder", "pid", "host", "slots", "since", "expires"):
        holders.add_column(column)
    for lease in detail.holders:
        holders.add_row(
            _holder(lease.holder),
            str(lease.holder.pid),
            lease.holder.host,
            str(lease.slots.get(lim.name, 0)),
            _when(lease.created),
            _when(lease.expires),
        )
    console.print(holders if detail.holders else "No holders.")
    waiters = Table(title="waiters (in grant order)")
    for column in ("position", "slots", "priority", "since", "holder", "pid", "host"):
        waiters.add_column(column)
    for waiter in detail.waiters:
        waiters.add_row(
            str(waiter.position),
            str(waiter.slots),
            str(waiter.priority),
            _when(waiter.since),
            _holder(waiter.holder),
            str(waiter.holder.pid),
            waiter.holder.host,
        )
    console.print(waiters if detail.waiters else "No waiters.")


@app.command()
def create(
    name: str = typer.Argument(..., help="Name of the limit (1-200 characters)."),
    limit: int = typer.Option(..., "--limit", "-l", help="Slots available (at least 1)."),
    slot_decay_per_second: float = typer.Option(
        0.0, "--slot-decay-per-second", help="Slots drained per second: > 0 makes a rate limit."
    ),
    active_slots: int = typer.Option(0, "--active-slots", help="Slots taken from the start."),
    disable: bool = typer.Option(False, "--disable", help="Create it disabled (not applied)."),
) -> None:
    """Create a limit."""
    created = _client().create_limit(
        name,
        limit,
        active=not disable,
        slot_decay_per_second=slot_decay_per_second,
        active_slots=active_slots,
    )
    kind = "rate limit" if created.slot_decay_per_second else "concurrency limit"
    closed = f": {closed_text(created.name)}" if created.limit == 0 and created.active else ""
    typer.echo(
        f"Created {kind} {created.name!r} (id {created.id}) with limit {created.limit}{closed}."
    )


@app.command("ls")
def list_limits(
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
) -> None:
    """List every limit: limit, active slots, waiters, grants, denials, average occupancy."""
    check_output_format(output)
    client = _client()
    limits = client.list_limits()
    stats = {s.name: s for s in client.limit_stats()}
    print_limits(limits, output, title="concurrency limits", stats=stats)


@app.command()
def inspect(
    name: str = typer.Argument(..., help="Name of the limit."),
    output: str = typer.Option("table", "-o", "--output", help="table or json"),
    file: str | None = typer.Option(
        None, "--file", "-f", help="With -o json: write the JSON to this file instead."
    ),
) -> None:
    """Show a limit with its holders and its waiters in grant order."""
    from headway.exceptions import ValidationError

    check_output_format(output)
    if file is not None and output != "json":
        raise ValidationError("--file needs -o json")
    detail = _client().inspect_limit(name)
    if file is None:
        print_detail(detail, output)
        return
    try:
        with open(file, "w", encoding="utf-8") as out:
            out.write(json.dumps(detail_json(detail), indent=2) + "\n")
    except OSError as exc:
        raise ValidationError(f"cannot write {file}: {exc.strerror or exc}") from None
    typer.echo(f"Limit {name!r} written to {file}")


@app.command()
def update(
    name: str = typer.Argument(..., help="Name of the limit."),
    limit: int | None = typer.Option(None, "--limit", "-l", help="New number of slots."),
    enable: bool | None = typer.Option(None, "--enable/--disable", help="Apply it, or not."),
    slot_decay_per_second: float | None = typer.Option(
        None, "--slot-decay-per-second", help="New decay rate (0: a plain limit)."
    ),
    active_slots: int | None = typer.Option(None, "--active-slots", help="Set the slots taken."),
) -> None:
    """Change a limit live: holders keep their slots; new grants follow the new values."""
    if limit is None and enable is None and slot_decay_per_second is None and active_slots is None:
        raise ValidationError(
            "nothing to update: give --limit, --enable/--disable, --slot-decay-per-second"
            " or --active-slots"
        )
    updated = _client().update_limit(
        name,
        limit=limit,
        active=enable,
        slot_decay_per_second=slot_decay_per_second,
        active_slots=active_slots,
    )
    closed = f": {closed_text(updated.name)}" if updated.limit == 0 and updated.active else ""
    typer.echo(
        f"Updated {updated.name!r}: limit {updated.limit},"
        f" {'enabled' if updated.active else 'disabled'}{closed}."
    )


@app.command()
def enable(name: str = typer.Argument(..., help="Name of the limit.")) -> None:
    """Apply a limit again."""
    _client().update_limit(name, active=True)
    typer.echo(f"Enabled {name!r}.")


@app.command()
def disable(name: str = typer.Argument(..., help="Name of the limit.")) -> None:
    """Stop applying a limit (its waiters go ahead; holders keep their slots)."""
    _client().update_limit(name, active=False)
    typer.echo(f"Disabled {name!r}.")


@app.command()
def delete(
    name: str = typer.Argument(..., help="Name of the limit."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Delete even while slots are held (their holders lose them)."
    ),
) -> None:
    """Delete a limit; refused while it has holders, unless --force."""
    client = _client()
    client.read_limit(name)  # an unknown name fails before any question
    if not yes and sys.stdin.isatty():
        # As in Prefect, only a person at a terminal is asked; a script is not stopped.
        typer.confirm(f"Delete limit {name!r}?", abort=True)
    client.delete_limit(name, force=force)
    typer.echo(f"Deleted {name!r}.")
