"""Schedules whose times cannot be computed are refused; computing times has a bounded cost.

Before, ``0 0 30 2 *``, an interval of ``1e308`` seconds and an rrule with
``COUNT=1000000000`` were accepted, stored, and then stopped every scheduler
pass (or kept a core busy). Moving an rrule's start forward by whole periods,
instead of walking it from its DTSTART, must not change a single time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as du_rrule

from headway.core.schedules import (
    INTERVAL_MAX_SECONDS,
    RRULE_MAX_COUNT,
    ScheduleError,
    cron,
    interval,
    next_times,
    rrule,
)
from headway.exceptions import ValidationError

NOW = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "expression", ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4 *", "0 0 31 4,6,9,11 *", "0 0 30,31 2 *"]
)
def test_a_cron_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(ValidationError, match="never fires"):
        cron(expression)


@pytest.mark.parametrize("expression", ["0 0 29 2 *", "0 0 31 * *", "59 23 31 12 *", "0 0 30 2 1"])
def test_a_rare_cron_is_accepted_and_fires(expression: str) -> None:
    times = next_times(cron(expression), NOW, 3)
    assert len(times) == 3 and times == sorted(times) and times[0] > NOW


@pytest.mark.parametrize(
    "every", [1e308, "99999999999w", INTERVAL_MAX_SECONDS * 2, 1e-300, "0.0001s", float("inf")]
)
def test_intervals_outside_the_documented_range_are_refused(every: object) -> None:
    with pytest.raises(ValidationError, match="interval"):
        interval(every)


def test_the_longest_interval_is_accepted_and_its_times_stop_before_year_10000() -> None:
    longest = interval(INTERVAL_MAX_SECONDS)
    times = next_times(longest, NOW, 1000)
    assert 0 < len(times) < 100
    assert times[-1].year <= 9999


@pytest.mark.parametrize("anchor", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_anchor_outside_years_1_to_9999_in_utc_is_refused(anchor: str) -> None:
    with pytest.raises(ValidationError, match="anchor"):
        interval(60, anchor)


@pytest.mark.parametrize(
    ("rule", "word"),
    [
        ("FREQ=SECONDLY;INTERVAL=1;COUNT=1000000000", "COUNT"),
        (f"FREQ=DAILY;COUNT={RRULE_MAX_COUNT + 1}", "COUNT"),
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "never fires"),
        ("FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31", "never fires"),
        ("FREQ=WEEKLY;INTERVAL=2;BYMONTH=2;BYMONTHDAY=31", "never fires"),
        ("FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30", "never fires"),
        ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", "never fires"),  # from 2020-01-01, a Wednesday
        ("FREQ=HOURLY;INTERVAL=168;BYDAY=TU", "never fires"),
        ("RRULE:FREQ=DAILY\nEXRULE:FREQ=DAILY", "EXRULE"),
    ],
)
def test_an_rrule_too_costly_or_that_never_fires_is_refused(rule: str, word: str) -> None:
    with pytest.raises(ValidationError, match=word):
        rrule(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO",
        "FREQ=HOURLY;INTERVAL=5;BYMONTH=2;BYMONTHDAY=29",
        "FREQ=DAILY;INTERVAL=7;BYDAY=WE",
        "FREQ=MINUTELY;BYDAY=1MO;BYMONTH=1",
    ],
)
def test_a_rare_rrule_is_accepted_and_fires(rule: str) -> None:
    times = next_times(rrule(rule), NOW, 2)
    assert len(times) == 2 and NOW < times[0] < times[1]


def test_an_rrule_is_never_walked_from_its_start() -> None:
    # From year 1, a secondly rule has 6e10 occurrences before now: walking them
    # one at a time would never finish (pytest's timeout would end the test).
    rule = rrule("DTSTART:00010101T000000\nRRULE:FREQ=SECONDLY;INTERVAL=7")
    times = next_times(rule, NOW, 3)
    assert len(times) == 3
    start = datetime(1, 1, 1, tzinfo=UTC)
    assert all(((t - start) // timedelta(seconds=1)) % 7 == 0 for t in times)
    assert times[0] - NOW <= timedelta(seconds=7)


@pytest.mark.parametrize(
    "rule",
    [
        "DTSTART:20250131T090000\nRRULE:FREQ=MONTHLY",
        "DTSTART:20240229T120000\nRRULE:FREQ=YEARLY",
        "DTSTART:20250106T080000\nRRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE",
        "DTSTART:20260301T000013\nRRULE:FREQ=MINUTELY;INTERVAL=17",
        "DTSTART:20250101T050000\nRRULE:FREQ=HOURLY;INTERVAL=5;BYMINUTE=0,30",
        "DTSTART:20250101T000000\nRRULE:FREQ=MONTHLY;INTERVAL=5;BYDAY=-1FR",
        "DTSTART;TZID=Europe/Paris:20250301T023000\nRRULE:FREQ=DAILY",
        "DTSTART:20250115T000000\nRRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        "FREQ=DAILY;INTERVAL=3;BYHOUR=9",
    ],
)
def test_moving_the_start_keeps_every_time(rule: str) -> None:
    """The times from the moved start are the times of the rule walked from its start."""
    schedule = rrule(rule, "Europe/Paris")
    after = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    got = next_times(schedule, after, 12)
    start = None if "DTSTART" in rule else datetime(2020, 1, 1)
    expected: list[datetime] = []
    for t in islice(du_rrule.rrulestr(rule, dtstart=start, forceset=True), 200_000):
        utc = (t if t.tzinfo is not None else t.replace(tzinfo=PARIS)).astimezone(UTC)
        if utc > after:
            expected.append(utc)
        if len(expected) == 12:
            break
    assert got == expected


@pytest.mark.parametrize(
    "schedule",
    [
        rrule("DTSTART:99991231T000000\nRRULE:FREQ=DAILY"),
        rrule("DTSTART:99991231T235959\nRRULE:FREQ=SECONDLY"),
        cron("59 23 31 12 *", "Etc/GMT+12"),
        interval(60, "9999-12-31T23:00:00+00:00"),
    ],
)
def test_times_near_year_9999_end_or_raise_a_schedule_error(schedule: object) -> None:
    late = datetime(9999, 12, 31, 12, tzinfo=UTC)
    try:
        times = next_times(schedule, late, 50)  # type: ignore[arg-type]
    except ScheduleError:
        return
    assert all(t > late for t in times)


def test_an_rrule_with_count_keeps_its_times_and_ends() -> None:
    rule = rrule("DTSTART:20261201T000000\nRRULE:FREQ=DAILY;COUNT=100")
    assert next_times(rule, datetime(2027, 3, 9, tzinfo=UTC), 2) == [
        datetime(2027, 3, 10, tzinfo=UTC)
    ]
    assert next_times(rule, datetime(2027, 3, 10, tzinfo=UTC), 2) == []
    assert next_times(rule, datetime(2100, 1, 1, tzinfo=UTC), 2) == []
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert next_times(rule, start, 3) == [datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
