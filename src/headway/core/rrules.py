"""iCalendar recurrence rules (through dateutil) with a bounded cost.

dateutil walks a rule from its start, one period at a time, and searches for
a match up to year 9999 when none comes. Both are bounded here:

- a rule without COUNT is started by whole periods just before the time asked
  about (:func:`build_rrule` with ``after``): the same times, not walked from
  its DTSTART (a secondly rule from year 1 would never finish);
- a rule with COUNT is counted from its start, so COUNT is at most
  :data:`RRULE_MAX_COUNT`, and once it has ended it is not walked again;
- a rule that never fires is refused (:func:`rrule_refusal`): probed over the
  calendar's last 400 years, one Gregorian cycle, where dateutil's search ends.

Pure functions of the rule's text and timezone; used by
:mod:`headway.core.schedules`.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from headway.exceptions import ValidationError

#: Fixed start of rrules written without DTSTART: their times must not depend on
#: when the rule was read, or two schedulers would disagree.
RRULE_DEFAULT_START = datetime(2020, 1, 1)
#: Most occurrences an rrule with COUNT may have (walking it costs one step each).
RRULE_MAX_COUNT = 10_000
#: Most occurrences one computation walks through before giving up.
RRULE_MAX_STEPS = 20_000
#: The probe of an rrule starts this many years before the calendar's end: one
#: Gregorian cycle, so that a rule silent there is silent everywhere, and so that
#: dateutil (which looks for a match up to year 9999) stops after 400 years.
_PROBE_YEARS = 400


@functools.lru_cache(maxsize=1024)
def rrule_refusal(text: str, timezone: str) -> str | None:
    """Why the rule ``text`` (in ``timezone``) is refused, or None if it is accepted.

    Remembered: the probe of a rule that never fires walks up to 400 years of
    its periods (a fraction of a second), and every scheduler pass reads the
    stored rules again.
    """
    try:
        built, _ = build_rrule(text, timezone)
        _check_rrule_cost(text, built)
    except ValidationError as exc:
        return str(exc)
    except Exception as exc:
        return f"invalid rrule {text!r}: {exc}"
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


#: dateutil's frequency codes (YEARLY 0 ... SECONDLY 6) of the fixed-length frequencies.
_FREQ_BY_CODE = {2: 604800, 3: 86400, 4: 3600, 5: 60, 6: 1}


def build_rrule(text: str, timezone: str, after: datetime | None = None) -> tuple[Any, ZoneInfo]:
    """The rule as a dateutil rruleset (a rule without DTSTART starts on 2020-01-01).

    With ``after``, each part without COUNT starts by whole periods just before
    ``after``: the same times, without walking from the start (a minutely rule
    from 2020 would take seconds). A part with COUNT is counted from its start,
    which :data:`RRULE_MAX_COUNT` keeps short.
    """
    from dateutil import rrule as du_rrule

    tz = ZoneInfo(timezone)
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
def _last_time(text: str, timezone: str) -> datetime | None:
    """The last time of a rule that ends by COUNT alone (None: it has no known end).

    Such a rule is counted from its start, so each computation walks it; once it
    has ended, this (computed once per process, at most RRULE_MAX_COUNT steps)
    lets the scheduler skip it.
    """
    rule, _ = build_rrule(text, timezone)
    if not rule._rrule or any(part._count is None for part in rule._rrule) or rule._rdate:
        return None
    tail = deque(islice(rule, RRULE_MAX_COUNT * len(rule._rrule)), maxlen=1)
    return tail[0] if tail else None


def rrule_times(text: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """The rule's times strictly after ``after``, in UTC, increasing (lazily).

    Raises ValidationError when more than :data:`RRULE_MAX_STEPS` times are
    walked through (only a rule counted from its start can come near it).
    """
    rule, tz = build_rrule(text, timezone, after)
    starts = [part._dtstart for part in rule._rrule] + list(rule._rdate)
    if not starts:
        return
    aware = starts[0].tzinfo is not None
    cursor = after.astimezone(tz)
    if not aware:
        cursor = cursor.replace(tzinfo=None)
    last = _last_time(text, timezone)
    if last is not None and cursor >= last:
        return  # a rule that has ended: not walked again on every scheduler pass
    previous = after
    for steps, t in enumerate(rule.xafter(cursor, count=None, inc=False)):
        if steps >= RRULE_MAX_STEPS:
            raise ValidationError(f"rrule {text!r} costs too much to compute")
        utc = t.astimezone(UTC) if aware else t.replace(tzinfo=tz).astimezone(UTC)
        if utc > previous:
            previous = utc
            yield utc


__all__ = [
    "RRULE_DEFAULT_START",
    "RRULE_MAX_COUNT",
    "RRULE_MAX_STEPS",
    "build_rrule",
    "rrule_refusal",
    "rrule_times",
]
