"""Schedules: cron (with a timezone), interval (with an anchor), rrule -> next times.

Pure functions over frozen records: no I/O, no clock. Every schedule answers
"the next ``n`` times strictly after ``t``", and the answer depends only on the
schedule and ``t``, never on when it is asked: that is what lets several
schedulers (or one restarted) create the same runs and collide on the store's
unique (deployment, scheduled time) index instead of duplicating them.

A schedule is stored as a small JSON dict (:func:`schedule_to_dict` /
:func:`schedule_from_dict`) and built from user input with :func:`cron`,
:func:`interval` and :func:`rrule`, which reject bad input with a
:class:`~headway.exceptions.ValidationError` that says what is wrong.

Computing times has a bounded cost, and a schedule whose times cannot be
computed is refused when it is made, not found out by every scheduler pass:

- a cron must fire within :data:`CRON_MAX_YEARS_BETWEEN` years (``0 0 30 2 *``
  never does);
- an interval is at most :data:`INTERVAL_MAX_SECONDS` (100 years) and at least
  :data:`INTERVAL_MIN_SECONDS`;
- an rrule has at most :data:`RRULE_MAX_COUNT` occurrences when it has a COUNT,
  must fire within the calendar's last 400 years (the Gregorian calendar repeats
  every 400 years, so a rule that does not fire there never fires), and is never
  walked from its start one occurrence at a time: without COUNT its start is
  moved forward by whole periods to just before the time asked about (the
  rrule machinery is :mod:`headway.core.rrules`).

Whatever still fails (a time past year 9999, a rule a newer version wrote) raises
:class:`ScheduleError` (a ValidationError) from :func:`next_times`, never a
library's own exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from headway.core.bounds import EPOCH_MAX, EPOCH_MIN
from headway.core.rrules import RRULE_DEFAULT_START, RRULE_MAX_COUNT, rrule_refusal, rrule_times
from headway.exceptions import ScheduleError, ValidationError

#: Fixed anchor of intervals given without one (midnight UTC, 2020-01-01).
INTERVAL_DEFAULT_ANCHOR = datetime(2020, 1, 1, tzinfo=UTC)
#: Most times one call returns.
MAX_TIMES = 10_000
#: Shortest interval: below it, ``anchor + k * interval`` stops moving forward in floats.
INTERVAL_MIN_SECONDS = 0.001
#: Longest interval: 100 years (of 365.25 days).
INTERVAL_MAX_SECONDS = 100 * 365.25 * 86400
#: A cron must fire at least once in this many years, or it is refused.
CRON_MAX_YEARS_BETWEEN = 30
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression evaluated in a timezone (DST-aware)."""

    cron: str
    timezone: str = "UTC"

    @property
    def kind(self) -> str:
        """``cron``."""
        return "cron"

    def describe(self) -> str:
        """A short human description."""
        return f"cron {self.cron!r} ({self.timezone})"


@dataclass(frozen=True)
class IntervalSchedule:
    """Every ``interval_seconds`` seconds, counted from ``anchor`` (aware datetime)."""

    interval_seconds: float
    anchor: datetime = INTERVAL_DEFAULT_ANCHOR
    timezone: str = "UTC"

    @property
    def kind(self) -> str:
        """``interval``."""
        return "interval"

    def describe(self) -> str:
        """A short human description."""
        return f"every {format_duration(self.interval_seconds)} from {self.anchor.isoformat()}"


@dataclass(frozen=True)
class RRuleSchedule:
    """An iCalendar recurrence rule evaluated in a timezone."""

    rrule: str
    timezone: str = "UTC"

    @property
    def kind(self) -> str:
        """``rrule``."""
        return "rrule"

    def describe(self) -> str:
        """A short human description."""
        return f"rrule {self.rrule!r} ({self.timezone})"


Schedule = CronSchedule | IntervalSchedule | RRuleSchedule


# -- validation and construction -------------------------------------------------------
def validate_timezone(name: object) -> ZoneInfo:
    """The IANA timezone ``name`` (``UTC``, ``Europe/Paris``); a clear error when unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"timezone must be an IANA name such as 'UTC', got {name!r}")
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def cron(expression: str, timezone: str = "UTC") -> CronSchedule:
    """A cron schedule; ValidationError for an invalid expression or timezone."""
    from croniter import croniter

    if not isinstance(expression, str):
        raise ValidationError(f"cron expression must be a string, got {expression!r}")
    if not expression.strip():
        raise ValidationError("cron expression must not be empty")
    expr = " ".join(expression.split())
    validate_timezone(timezone)
    # Seconds fields (6 parts) are refused: runs a second apart belong to an interval.
    if not expr.startswith("@") and len(expr.split()) != 5:
        raise ValidationError(
            f"invalid cron expression {expression!r}: expected 5 fields"
            " (minute hour day-of-month month day-of-week)"
        )
    try:
        ok = croniter.is_valid(expr)
    except Exception:
        ok = False
    if not ok:
        raise ValidationError(f"invalid cron expression {expression!r}")
    schedule = CronSchedule(expr, timezone.strip())
    # A cron on a day no month has (``0 0 30 2 *``) passes croniter's syntax check
    # but never fires: look for its first time from a fixed date, over a bounded span.
    start = datetime(2020, 1, 1, tzinfo=ZoneInfo(schedule.timezone))
    try:
        croniter(expr, start, max_years_between_matches=CRON_MAX_YEARS_BETWEEN).get_next(datetime)
    except Exception:
        raise ValidationError(
            f"cron expression {expression!r} never fires (no time matches it"
            f" within {CRON_MAX_YEARS_BETWEEN} years)"
        ) from None
    return schedule


def parse_duration(value: object) -> float:
    """Seconds from ``30``, ``"30"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValidationError(f"invalid interval {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValidationError(
                f"invalid interval {value!r}; use seconds or a number with s, m, h, d or w"
                " (e.g. 30s, 5m, 1h)"
            )
        seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    else:
        raise ValidationError(f"invalid interval {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"interval must be greater than 0 seconds, got {value!r}")
    if seconds < INTERVAL_MIN_SECONDS or seconds > INTERVAL_MAX_SECONDS:
        raise ValidationError(
            f"interval must be between {INTERVAL_MIN_SECONDS:g} seconds and"
            f" {INTERVAL_MAX_SECONDS:.0f} seconds (100 years), got {value!r}"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """``90`` -> ``1m30s``; whole units only when exact."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def interval(
    every: object, anchor: datetime | str | None = None, timezone: str = "UTC"
) -> IntervalSchedule:
    """An interval schedule; ``anchor`` defaults to 2020-01-01 00:00 UTC."""
    seconds = parse_duration(every)
    tz = validate_timezone(timezone)
    if anchor is None:
        at = INTERVAL_DEFAULT_ANCHOR
    else:
        if isinstance(anchor, str):
            try:
                at = datetime.fromisoformat(anchor)
            except ValueError:
                raise ValidationError(f"invalid anchor date {anchor!r}; use ISO 8601") from None
        elif isinstance(anchor, datetime):
            at = anchor
        else:
            raise ValidationError(f"invalid anchor date {anchor!r}")
        if at.tzinfo is None:
            at = at.replace(tzinfo=tz)
        if not EPOCH_MIN <= at.timestamp() <= EPOCH_MAX:
            raise ValidationError(f"anchor date {anchor!r} is outside years 1 to 9999 in UTC")
    return IntervalSchedule(seconds, at, timezone.strip())


def rrule(rule: str, timezone: str = "UTC") -> RRuleSchedule:
    """An rrule schedule; ValidationError for a rule dateutil cannot parse."""
    if not isinstance(rule, str) or not rule.strip():
        raise ValidationError("rrule must not be empty")
    validate_timezone(timezone)
    schedule = RRuleSchedule(rule.strip(), timezone.strip())
    refusal = rrule_refusal(schedule.rrule, schedule.timezone)
    if refusal is not None:
        raise ValidationError(refusal)
    return schedule


# -- next times -------------------------------------------------------------------------
def next_times(
    schedule: Schedule, after: datetime, n: int, until: datetime | None = None
) -> list[datetime]:
    """Up to ``n`` times strictly after ``after`` (and not after ``until``), in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_times needs an aware datetime")
    n = max(0, min(n, MAX_TIMES))
    out: list[datetime] = []
    if n == 0:
        return out
    try:
        for t in _iterate(schedule, after):
            if until is not None and t > until:
                break
            out.append(t)
            if len(out) >= n:
                break
    except ScheduleError:
        raise
    except (ArithmeticError, ValueError, KeyError, TypeError) as exc:
        # croniter's "no date found", a time past year 9999, a rule this version
        # cannot read: one message, never a library's exception to the scheduler.
        raise ScheduleError(
            f"the times of {schedule.describe()} cannot be computed: {exc}"
        ) from None
    return out


def _iterate(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    if isinstance(schedule, CronSchedule):
        return _cron_times(schedule, after)
    if isinstance(schedule, IntervalSchedule):
        return _interval_times(schedule, after)
    return rrule_times(schedule.rrule, schedule.timezone, after)


def _cron_times(schedule: CronSchedule, after: datetime) -> Iterator[datetime]:
    from croniter import croniter

    tz = ZoneInfo(schedule.timezone)
    it = croniter(schedule.cron, after.astimezone(tz))
    previous = after
    while True:
        t = it.get_next(datetime).astimezone(UTC)
        # Around a DST change croniter can repeat an instant; keep times strictly increasing.
        if t > previous:
            previous = t
            yield t


def _interval_times(schedule: IntervalSchedule, after: datetime) -> Iterator[datetime]:
    step = schedule.interval_seconds
    anchor = schedule.anchor.timestamp()
    k = math.floor((after.timestamp() - anchor) / step) + 1
    while True:
        ts = anchor + k * step
        if ts > EPOCH_MAX:
            return  # past year 9999: no more times
        if ts > after.timestamp():
            yield datetime.fromtimestamp(ts, UTC)
        k += 1


# -- storage ----------------------------------------------------------------------------
def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    """The JSON form stored with a deployment."""
    if isinstance(schedule, CronSchedule):
        return {"cron": schedule.cron, "timezone": schedule.timezone}
    if isinstance(schedule, IntervalSchedule):
        return {
            "interval": schedule.interval_seconds,
            "anchor": schedule.anchor.isoformat(),
            "timezone": schedule.timezone,
        }
    return {"rrule": schedule.rrule, "timezone": schedule.timezone}


def schedule_from_dict(data: Mapping[str, Any]) -> Schedule:
    """A schedule from its JSON form (or from user input of the same shape), validated."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"a schedule must be a mapping, got {type(data).__name__}")
    timezone = data.get("timezone") or "UTC"
    kinds = [k for k in ("cron", "interval", "rrule") if data.get(k) is not None]
    if len(kinds) != 1:
        raise ValidationError("a schedule needs exactly one of cron, interval or rrule")
    if kinds[0] == "cron":
        return cron(data["cron"], timezone)
    if kinds[0] == "interval":
        return interval(data["interval"], data.get("anchor") or data.get("anchor_date"), timezone)
    return rrule(data["rrule"], timezone)


def to_schedule(value: object, timezone: str | None = None) -> Schedule:
    """A schedule from a record, a dict, or a cron string (user input)."""
    if isinstance(value, CronSchedule | IntervalSchedule | RRuleSchedule):
        return value
    if isinstance(value, Mapping):
        data = dict(value)
        if timezone and not data.get("timezone"):
            data["timezone"] = timezone
        return schedule_from_dict(data)
    if isinstance(value, str):
        return cron(value, timezone or "UTC")
    raise ValidationError(f"cannot make a schedule from {value!r}")


def describe(schedule: Schedule) -> str:
    """A short human description of any schedule."""
    return schedule.describe()


__all__ = [
    "CRON_MAX_YEARS_BETWEEN",
    "INTERVAL_MAX_SECONDS",
    "INTERVAL_MIN_SECONDS",
    "RRULE_DEFAULT_START",
    "RRULE_MAX_COUNT",
    "CronSchedule",
    "IntervalSchedule",
    "RRuleSchedule",
    "Schedule",
    "ScheduleError",
    "cron",
    "describe",
    "format_duration",
    "interval",
    "next_times",
    "parse_duration",
    "rrule",
    "schedule_from_dict",
    "schedule_to_dict",
    "to_schedule",
    "validate_timezone",
]
