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
  moved forward by whole periods to just before the time asked about.

Whatever still fails (a time past year 9999, a rule a newer version wrote) raises
:class:`ScheduleError` (a ValidationError) from :func:`next_times`, never a
library's own exception.
"""

from __future__ import annotations

import functools
import math
import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from headway.core.bounds import EPOCH_MAX, EPOCH_MIN
from headway.exceptions import ValidationError

#: Fixed start of rrules written without DTSTART: their times must not depend on
#: when the rule was read, or two schedulers would disagree.
RRULE_DEFAULT_START = datetime(2020, 1, 1)
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
#: Most occurrences an rrule with COUNT may have (walking it costs one step each).
RRULE_MAX_COUNT = 10_000
#: Most occurrences one computation walks through before giving up.
RRULE_MAX_STEPS = 20_000
#: The probe of an rrule starts this many years before the calendar's end: one
#: Gregorian cycle, so that a rule silent there is silent everywhere, and so that
#: dateutil (which looks for a match up to year 9999) stops after 400 years.
_PROBE_YEARS = 400

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


class ScheduleError(ValidationError):
    """A schedule's times cannot be computed (impossible, too costly, past year 9999)."""


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
    refusal = _rrule_refusal(schedule)
    if refusal is not None:
        raise ValidationError(refusal)
    return schedule


@functools.lru_cache(maxsize=1024)
def _rrule_refusal(schedule: RRuleSchedule) -> str | None:
    """Why ``schedule`` is refused, or None; remembered, as the check of a rule that
    never fires walks up to 400 years (about a second) and every scheduler pass
    reads the stored rules again."""
    try:
        built, _ = _build_rrule(schedule)
        _check_rrule_cost(schedule.rrule, built)
    except ValidationError as exc:
        return str(exc)
    except Exception as exc:
        return f"invalid rrule {schedule.rrule!r}: {exc}"
    return None


def _check_rrule_cost(text: str, rule: Any) -> None:
    """Refuse a rule whose times would cost unbounded work to compute."""
    if rule._exrule:
        # An EXRULE can remove every time of its RRULE, and dateutil would then
        # search up to year 9999; RFC 5545 has deprecated it anyway.
        raise ValidationError(f"rrule {text!r}: EXRULE is not supported; use EXDATE")
    if len(rule._rdate) + len(rule._exdate) > RRULE_MAX_COUNT:
        raise ValidationError(f"rrule {text!r} lists more than {RRULE_MAX_COUNT} dates")
    for part in rule._rrule:
        if part._count is not None and part._count > RRULE_MAX_COUNT:
            raise ValidationError(
                f"rrule {text!r} has COUNT={part._count}; the most is {RRULE_MAX_COUNT}"
                " (use UNTIL, or no end, for longer schedules)"
            )
        if _no_day_matches(part):
            raise ValidationError(f"rrule {text!r} never fires (no date matches its BY rules)")
        # The same rule without its end, started one Gregorian cycle before the
        # calendar's end: dateutil searches for a match at most up to year 9999, so
        # the probe is bounded, and a rule silent for 400 years never fires.
        target = datetime(9999 - _PROBE_YEARS, 1, 1, tzinfo=part._dtstart.tzinfo)
        probe = part.replace(dtstart=_moved_start(part, target), count=None, until=None)
        if next(iter(probe), None) is None:
            raise ValidationError(f"rrule {text!r} never fires (no date matches its BY rules)")


#: The BY parts that choose days (as dateutil keeps them when given).
_DAY_PARTS = ("bymonth", "bymonthday", "byyearday", "byweekno", "byweekday", "byeaster")


def _no_day_matches(part: Any) -> bool:
    """Whether a daily or finer rule's day filters match no day at all.

    The exact probe below walks such a rule one day at a time (400 years:
    146,097 steps); a yearly rule with the same day filters answers in 400
    steps. Only for DAILY and finer rules, without BYSETPOS or an ordinal
    weekday (1MO): their days are exactly those the filters give, whatever the
    frequency; the other rules' periods are long enough for the exact probe.
    """
    from dateutil import rrule as du_rrule

    if part._freq < du_rrule.DAILY or part._bysetpos or part._bynweekday:
        return False
    given = {k: v for k, v in part._original_rule.items() if k in _DAY_PARTS and v}
    if not given:
        return False
    start = datetime(9999 - _PROBE_YEARS, 1, 1)
    return next(iter(du_rrule.rrule(du_rrule.YEARLY, dtstart=start, **given)), None) is None


def _moved_start(part: Any, target: datetime) -> datetime:
    """The rule's start moved by whole periods of the rule to at most ``target``.

    The rule's times from the moved start on are its times from its own start:
    the step is a whole number of its periods (INTERVAL x FREQ), and the day of
    the month and the time of day, which dateutil takes from the start when no
    BY part gives them, are kept. Used instead of walking from the start.
    """
    start: datetime = part._dtstart
    freq, every = part._freq, max(1, part._interval)
    if freq in _FREQ_BY_CODE:
        period = timedelta(seconds=_FREQ_BY_CODE[freq] * every)
        steps = (target - start) // period - 1
        return start + period * steps if steps > 0 else start
    months_per_step = every * (12 if freq == 0 else 1)  # YEARLY 0, MONTHLY 1
    steps = ((target.year - start.year) * 12 + target.month - start.month) // months_per_step - 1
    # Go back a step at a time while the day does not exist (the 31st, February 29th).
    for back in range(48):
        if steps - back <= 0:
            break
        months = start.month - 1 + (steps - back) * months_per_step
        try:
            return start.replace(year=start.year + months // 12, month=months % 12 + 1)
        except ValueError:
            continue
    return start


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
    return _rrule_times(schedule, after)


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


#: dateutil's frequency codes (YEARLY 0 ... SECONDLY 6) of the fixed-length frequencies.
_FREQ_BY_CODE = {2: 604800, 3: 86400, 4: 3600, 5: 60, 6: 1}


def _build_rrule(schedule: RRuleSchedule, after: datetime | None = None) -> tuple[Any, ZoneInfo]:
    """The rule as a dateutil rruleset (a rule without DTSTART starts on 2020-01-01).

    With ``after``, each part without COUNT starts by whole periods just before
    ``after``: the same times, without walking from the start (a minutely rule
    from 2020 would take seconds). A part with COUNT is counted from its start,
    which :data:`RRULE_MAX_COUNT` keeps short.
    """
    from dateutil import rrule as du_rrule

    tz = ZoneInfo(schedule.timezone)
    text = schedule.rrule
    if "DTSTART" in text.upper():
        rule = du_rrule.rrulestr(text, forceset=True)
    else:
        rule = du_rrule.rrulestr(text, dtstart=RRULE_DEFAULT_START, forceset=True)
    if after is None:
        return rule, tz
    moved = du_rrule.rruleset()
    for part in rule._rrule:
        if part._count is None:
            local = after.astimezone(tz)
            target = local if part._dtstart.tzinfo is not None else local.replace(tzinfo=None)
            part = part.replace(dtstart=_moved_start(part, target))
        moved.rrule(part)
    for when in rule._rdate:
        moved.rdate(when)
    for when in rule._exdate:
        moved.exdate(when)
    return moved, tz


@functools.lru_cache(maxsize=1024)
def _last_time(schedule: RRuleSchedule) -> datetime | None:
    """The last time of a rule that ends by COUNT alone (None: it has no known end).

    Such a rule is counted from its start, so each computation walks it; once it
    has ended, this (computed once per process, at most RRULE_MAX_COUNT steps)
    lets the scheduler skip it.
    """
    rule, _ = _build_rrule(schedule)
    if not rule._rrule or any(part._count is None for part in rule._rrule) or rule._rdate:
        return None
    tail = deque(islice(rule, RRULE_MAX_COUNT * len(rule._rrule)), maxlen=1)
    return tail[0] if tail else None


def _rrule_times(schedule: RRuleSchedule, after: datetime) -> Iterator[datetime]:
    rule, tz = _build_rrule(schedule, after)
    starts = [part._dtstart for part in rule._rrule] + list(rule._rdate)
    if not starts:
        return
    aware = starts[0].tzinfo is not None
    cursor = after.astimezone(tz)
    if not aware:
        cursor = cursor.replace(tzinfo=None)
    last = _last_time(schedule)
    if last is not None and cursor >= last:
        return  # a rule that has ended: not walked again on every scheduler pass
    previous = after
    for steps, t in enumerate(rule.xafter(cursor, count=None, inc=False)):
        if steps >= RRULE_MAX_STEPS:
            raise ScheduleError(f"rrule {schedule.rrule!r} costs too much to compute")
        utc = t.astimezone(UTC) if aware else t.replace(tzinfo=tz).astimezone(UTC)
        if utc > previous:
            previous = utc
            yield utc


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
