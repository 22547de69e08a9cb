"""Helpers shared by the deployment, work-pool, work-queue, worker and deploy commands."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from headway.core.deployments import parse_param
from headway.core.schedules import describe, next_times, schedule_from_dict
from headway.exceptions import ValidationError

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).


def client() -> Any:
    """The process's default client (embedded, or HTTP with HEADWAY_API_URL)."""
    from headway.client.base import get_client

    return get_client()


def console() -> Any:
    """A rich console; piped output is not cut at 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def when(value: datetime | None) -> str:
    """A time for tables: local, to the second."""
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def limit_text(value: int | None) -> str:
    """A limit for tables: the number, or ``unlimited``; 0 says what it means."""
    if value == 0:
        return "0 (no runs start)"
    return "unlimited" if value is None else str(value)


def params(items: list[str] | None) -> dict[str, Any]:
    """``--param k=v`` options as a dict (values parsed as JSON when they parse)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_param(item)
        out[key] = value
    return out


def pick_limit(positional: int | None, option: int | None) -> int:
    """The limit given either as ``NAME N`` or as ``--limit N`` (not both, not neither)."""
    if positional is not None and option is not None and positional != option:
        raise ValidationError(f"two different limits given ({positional} and --limit {option})")
    value = option if option is not None else positional
    if value is None:
        raise ValidationError("give the limit: NAME N, or --limit N")
    return value


def schedule_next(schedule: dict[str, Any], after: datetime) -> str:
    """When a stored schedule next fires, or why its times cannot be computed.

    The scheduler skips a deployment whose schedule fails (and records it as an
    event); this is where a user sees that, and why.
    """
    try:
        found = next_times(schedule_from_dict(schedule), after, 1)
    except ValidationError as exc:
        return f"cannot be computed: {exc}"
    except Exception as exc:
        return f"cannot be computed: {type(exc).__name__}: {exc}"
    return f"next {when(found[0])}" if found else "no more times"


def schedule_text(schedule: dict[str, Any]) -> str:
    """A stored schedule in a few words."""
    try:
        return describe(schedule_from_dict(schedule))
    except Exception:
        return str(schedule)
