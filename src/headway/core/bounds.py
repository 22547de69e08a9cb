"""What the store can hold and read back: the ranges every input is checked against.

A value that passes validation is written; if it cannot be read back (a time
past year 9999 once in UTC, an integer wider than its column, a NaN in a JSON
text), every later read that meets it fails, for every caller. So the
boundary refuses such values before anything is written, with a
:class:`~headway.exceptions.ValidationError` (HTTP 422, CLI exit 2), the same
on every backend:

- integers against their column: ``integer`` (:data:`INT32_MAX`, PostgreSQL's
  narrower type; SQLite holds more) or ``bigint`` (:data:`INT64_MAX`);
- times, after conversion to UTC, within years 1 to 9999
  (:data:`EPOCH_MIN` .. :data:`EPOCH_MAX` seconds since the epoch);
- numbers inside JSON (parameters) finite: strict JSON has no NaN or Infinity.

Pure: no I/O, nothing of headway but its exceptions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from headway.exceptions import ValidationError

#: Largest value of an ``integer`` column (PostgreSQL's 32-bit type).
INT32_MAX = 2**31 - 1
#: Largest value of a ``bigint`` column.
INT64_MAX = 2**63 - 1
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z as seconds since the epoch: the
#: first and last second a stored time can be read back as a datetime.
EPOCH_MIN = -62135596800.0
EPOCH_MAX = 253402300799.0
#: Deepest nesting of lists and objects checked in a JSON value (deeper is refused).
JSON_MAX_DEPTH = 100


def check_whole(value: object, what: str, low: int, high: int) -> int:
    """A whole number (not a bool) between ``low`` and ``high`` inclusive."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number, got {value!r}")
    if value < low or value > high:
        raise ValidationError(f"{what} must be between {low} and {high}, got {value}")
    return value


def check_pid(value: object, what: str = "pid") -> int:
    """A process id: 0 to :data:`INT32_MAX` (the column is a 32-bit integer)."""
    return check_whole(value, what, 0, INT32_MAX)


def check_proc_start(value: object) -> int:
    """A process start time in clock ticks: 0 to :data:`INT64_MAX`."""
    return check_whole(value, "proc_start", 0, INT64_MAX)


def check_epoch(value: object, what: str) -> float:
    """Seconds since the epoch (a finite number) within years 1 to 9999 in UTC."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or not EPOCH_MIN <= seconds <= EPOCH_MAX:
        raise ValidationError(
            f"{what} must be a time between years 1 and 9999 in UTC, got {value!r}"
        )
    return seconds


def check_time(value: object, what: str) -> datetime:
    """An aware datetime (naive: UTC) whose UTC time falls within years 1 to 9999.

    ``9999-12-31T23:59:59-14:00`` is a valid datetime, but in UTC it is in year
    10000: stored as epoch seconds it could never be read back.
    """
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime, got {value!r}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    # Subtracting aware datetimes never overflows, whatever their offsets.
    if not EPOCH_MIN <= aware.timestamp() <= EPOCH_MAX:
        raise ValidationError(
            f"{what} {value.isoformat()} is outside years 1 to 9999 once converted to UTC"
        )
    return aware


def epoch_of(value: object, what: str) -> float:
    """``value.timestamp()`` (a naive datetime is local time, as Python takes it), checked.

    Refused when it falls outside years 1 to 9999 in UTC, or when Python cannot
    compute it at all (a naive time in year 1 on a machine east of UTC).
    """
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime, got {value!r}")
    try:
        seconds = value.timestamp()
    except (ValueError, OverflowError, OSError):
        seconds = math.inf
    if not EPOCH_MIN <= seconds <= EPOCH_MAX:
        raise ValidationError(
            f"{what} {value.isoformat()} is outside years 1 to 9999 once converted to UTC"
        )
    return seconds


def check_finite_json(value: Any, what: str) -> None:
    """Refuse NaN and infinite numbers anywhere inside a JSON-like value."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValidationError(
                    f"{what} contains {item!r}, which JSON cannot hold; use a finite number"
                )
        elif isinstance(item, Mapping | list | tuple):
            if depth >= JSON_MAX_DEPTH:
                raise ValidationError(f"{what} is nested more than {JSON_MAX_DEPTH} levels deep")
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)


__all__ = [
    "EPOCH_MAX",
    "EPOCH_MIN",
    "INT32_MAX",
    "INT64_MAX",
    "JSON_MAX_DEPTH",
    "check_epoch",
    "check_finite_json",
    "check_pid",
    "check_proc_start",
    "check_time",
    "check_whole",
    "epoch_of",
]
