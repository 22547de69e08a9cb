"""Schedules (cron with a timezone, interval with an anchor, rrule) and deployment rules:
pure logic, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from headway.core import deployments as rules
from headway.core.schedules import (
    cron,
    interval,
    next_times,
    parse_duration,
    rrule,
    schedule_from_dict,
    schedule_to_dict,
    to_schedule,
)
from headway.exceptions import ValidationError

T0 = datetime(2026, 3, 7, 12, 0, 30, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- cron ------------------------------------------------------------------------------
def test_cron_in_utc() -> None:
    assert next_times(cron("*/15 * * * *"), T0, 3) == [
        utc(2026, 3, 7, 12, 15),
        utc(2026, 3, 7, 12, 30),
        utc(2026, 3, 7, 12, 45),
    ]


def test_cron_follows_its_timezone_across_dst() -> None:
    # 09:00 in New York is 14:00 UTC before 2026-03-08 and 13:00 UTC after it.
    times = next_times(cron("0 9 * * *", "America/New_York"), utc(2026, 3, 6, 0, 0), 3)
    assert times == [utc(2026, 3, 6, 14), utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)]


def test_cron_time_that_does_not_exist_runs_once() -> None:
    # 02:30 does not exist on 2026-03-08 in New York: one run that day, none doubled.
    times = next_times(cron("30 2 * * *", "America/New_York"), utc(2026, 3, 7, 12), 3)
    assert len(times) == len(set(times)) == 3
    assert [t.date() for t in times] == [
        datetime(2026, 3, 8).date(),
        datetime(2026, 3, 9).date(),
        datetime(2026, 3, 10).date(),
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "invalid cron expression"),
        ("* * *", "expected 5 fields"),
        ("", "must not be empty"),
        ("*/0 * * * *", "invalid cron"),
    ],
)
def test_invalid_cron_is_refused_clearly(expr: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cron(expr)


def test_unknown_timezone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Olympus'"):
        cron("* * * * *", "Mars/Olympus")


# -- interval --------------------------------------------------------------------------
def test_interval_counts_from_its_anchor() -> None:
    s = interval("90s", utc(2026, 3, 7, 12, 0, 0))
    assert next_times(s, T0, 3) == [
        utc(2026, 3, 7, 12, 1, 30),
        utc(2026, 3, 7, 12, 3),
        utc(2026, 3, 7, 12, 4, 30),
    ]
    # Strictly after: a time equal to `after` is not returned.
    assert next_times(s, utc(2026, 3, 7, 12, 1, 30), 1) == [utc(2026, 3, 7, 12, 3)]


def test_interval_times_do_not_depend_on_when_they_are_asked() -> None:
    s = interval(7)
    a = next_times(s, T0, 20)
    b = next_times(s, T0 + timedelta(seconds=30), 10)
    assert set(b) <= set(a)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5m", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["0", "-5", "abc", "5 parsecs", 0, True])
def test_bad_intervals(bad: object) -> None:
    with pytest.raises(ValidationError):
        parse_duration(bad)


# -- rrule -----------------------------------------------------------------------------
def test_rrule_in_a_timezone() -> None:
    s = rrule("FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9;BYMINUTE=0", "Europe/Paris")
    # Paris is UTC+1 in early March.
    assert next_times(s, T0, 3) == [
        utc(2026, 3, 9, 8),
        utc(2026, 3, 13, 8),
        utc(2026, 3, 16, 8),
    ]


def test_rrule_without_dtstart_is_deterministic_and_fast() -> None:
    s = rrule("FREQ=MINUTELY;INTERVAL=7")
    # Anchored on 2020-01-01 00:00, however late it is asked.
    first = next_times(s, T0, 5)
    later = next_times(s, first[1], 3)
    assert later == first[2:5]
    minutes = (first[0] - utc(2020, 1, 1)).total_seconds() / 60
    assert minutes % 7 == 0


def test_rrule_with_count_ends() -> None:
    s = rrule("DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=3")
    assert next_times(s, utc(2025, 12, 1), 10) == [
        utc(2026, 1, 1, 9),
        utc(2026, 1, 2, 9),
        utc(2026, 1, 3, 9),
    ]
    assert next_times(s, utc(2026, 6, 1), 10) == []


def test_invalid_rrule() -> None:
    with pytest.raises(ValidationError, match="invalid rrule"):
        rrule("FREQ=SOMETIMES")


# -- stored form -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "schedule",
    [
        cron("0 * * * *", "Asia/Tokyo"),
        interval("5m", utc(2026, 1, 1)),
        rrule("FREQ=DAILY;BYHOUR=3"),
    ],
)
def test_stored_form_round_trips(schedule: object) -> None:
    stored = schedule_to_dict(schedule)  # type: ignore[arg-type]
    assert schedule_from_dict(stored) == schedule
    assert next_times(schedule_from_dict(stored), T0, 3) == next_times(schedule, T0, 3)  # type: ignore[arg-type]


def test_schedule_needs_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        schedule_from_dict({"cron": "* * * * *", "interval": 60})
    with pytest.raises(ValidationError, match="exactly one"):
        schedule_from_dict({})
    assert to_schedule("*/5 * * * *") == cron("*/5 * * * *")


def test_until_bounds_the_times() -> None:
    assert len(next_times(interval(60), T0, 100, until=T0 + timedelta(minutes=10))) == 10


# -- deployment rules ------------------------------------------------------------------
def test_names_and_limit_names() -> None:
    assert rules.full_name("etl", "nightly") == "etl/nightly"
    assert rules.split_full_name("etl/nightly") == ("etl", "nightly")
    assert rules.deployment_limit_name("etl/nightly") == "deployment:etl/nightly"
    assert rules.deployment_limit_name("etl/nightly", "acme") == "deployment:etl/nightly:acme"
    assert rules.pool_limit_name("p") == "pool:p"
    assert rules.queue_limit_name("p", "q") == "queue:p/q"
    for bad in ("etl", "a/b/c"):
        with pytest.raises(ValidationError, match="<flow-name>/<deployment-name>"):
            rules.split_full_name(bad)
    with pytest.raises(ValidationError, match="flow name must not be empty"):
        rules.split_full_name("/x")
    with pytest.raises(ValidationError, match="must not contain '/'"):
        rules.validate_object_name("a/b", "work pool")


@pytest.mark.parametrize("bad", [0, -1, "x", 1.5, True])
def test_limits_must_be_at_least_one(bad: object) -> None:
    with pytest.raises(ValidationError):
        rules.validate_concurrency_limit(bad)


def test_strategies() -> None:
    assert rules.validate_strategy("cancel-new") == "CANCEL_NEW"
    assert rules.validate_strategy("Enqueue") == "ENQUEUE"
    with pytest.raises(ValidationError, match="unknown collision strategy 'LATER'"):
        rules.validate_strategy("LATER")


def test_concurrency_keys() -> None:
    schema = {"names": ["customer_id", "n"], "required": [], "var_keyword": False}
    assert rules.validate_key_template("{customer_id}", schema) == "{customer_id}"
    with pytest.raises(ValidationError, match="unknown parameter"):
        rules.validate_key_template("{region}", schema)
    with pytest.raises(ValidationError, match="names no parameter"):
        rules.validate_key_template("static", schema)
    assert rules.render_key("{customer_id}-{n}", {"customer_id": "acme", "n": 2}) == "acme-2"
    long = rules.render_key("{customer_id}", {"customer_id": "x" * 500})
    assert len(long) == rules.KEY_MAX and long != rules.render_key(
        "{customer_id}", {"customer_id": "x" * 499}
    )
    with pytest.raises(ValidationError, match="cannot fill"):
        rules.render_key("{customer_id}", {})


def test_parameters_checked_against_the_signature() -> None:
    def fn(a: int, b: str = "x", *args: int) -> None:
        del a, b, args

    schema = rules.parameter_schema(fn)
    assert schema == {"names": ["a", "b"], "required": ["a"], "var_keyword": False}
    rules.check_parameters(schema, {"a": 1}, "flow fn")
    with pytest.raises(ValidationError, match=r"unknown parameter.*'c'.*takes a, b"):
        rules.check_parameters(schema, {"a": 1, "c": 2}, "flow fn")
    with pytest.raises(ValidationError, match=r"missing required parameter.*'a'"):
        rules.check_parameters(schema, {"b": "y"}, "flow fn")

    def open_ended(**kwargs: int) -> None:
        del kwargs

    rules.check_parameters(rules.parameter_schema(open_ended), {"anything": 1}, "flow")


def test_cli_params_and_entrypoints() -> None:
    assert rules.parse_param("n=3") == ("n", 3)
    assert rules.parse_param("name=acme") == ("name", "acme")
    assert rules.parse_param('tags=["a","b"]') == ("tags", ["a", "b"])
    with pytest.raises(ValidationError):
        rules.parse_param("novalue")
    assert rules.parse_entrypoint("flows/etl.py:nightly") == ("flows/etl.py", "nightly")
    for bad in ("flows/etl.py", "flows/etl.py:", "x.py:not-an-identifier"):
        with pytest.raises(ValidationError, match="invalid entrypoint"):
            rules.parse_entrypoint(bad)
