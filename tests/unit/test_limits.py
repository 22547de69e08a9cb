"""The slot arithmetic of core/limits.py: room, decay, grant order, wake-up plans, leases."""

from __future__ import annotations

import math

import pytest

from headway.core.limits import (
    NOT_QUEUED,
    LimitState,
    ProcessRecord,
    QueuedRequest,
    decayed,
    decide,
    has_room,
    is_ahead,
    is_dead,
    next_poll_interval,
    plan_wakeups,
    released,
    renew_interval,
    seconds_until_room,
    tag_limit_name,
    validate_decay,
    validate_limit,
    validate_name,
    validate_names,
    validate_occupy,
    validate_timeout,
)
from headway.exceptions import LimitClosed, ValidationError


def state(name: str, limit: int, active_slots: float = 0, decay: float = 0, active: bool = True):
    return LimitState(name, limit, active, float(active_slots), decay)


# -- validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "   ", "x" * 201, " lead", "trail ", "tab\there", "nl\n", 5])
def test_bad_names_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        validate_name(bad)


def test_names_are_unique_and_sorted_for_lock_order() -> None:
    assert validate_names(["b", "a", "b"]) == ("a", "b")
    assert validate_names("db") == ("db",)
    assert validate_name("x" * 200) == "x" * 200
    with pytest.raises(ValidationError):
        validate_names([])


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None, 10**10])
def test_limit_must_be_a_whole_number_of_at_least_0(bad: object) -> None:
    with pytest.raises(ValidationError):
        validate_limit(bad)


@pytest.mark.parametrize("bad", [0, -2, 2.0, False])
def test_occupy_must_be_at_least_one(bad: object) -> None:
    with pytest.raises(ValidationError):
        validate_occupy(bad)


def test_decay_and_timeout_validation() -> None:
    assert validate_decay(0) == 0.0
    assert validate_decay(2.5) == 2.5
    for bad in (-1, math.inf, math.nan, "1"):
        with pytest.raises(ValidationError):
            validate_decay(bad)
    assert validate_timeout(None) is None
    assert validate_timeout(0) == 0.0
    for bad in (-0.1, math.nan, "1", True):
        with pytest.raises(ValidationError):
            validate_timeout(bad)


def test_tag_limit_name() -> None:
    assert tag_limit_name("db") == "tag:db"
    with pytest.raises(ValidationError):
        tag_limit_name("")


# -- capacity and decay --------------------------------------------------------------------
def test_room_is_inclusive_of_the_limit() -> None:
    assert has_room(1, 2, 1)
    assert not has_room(2, 2, 1)
    assert not has_room(0, 2, 3)
    assert has_room(0.5, 2, 1)  # a rate limit half drained


def test_decay_drains_linearly_and_never_below_zero() -> None:
    assert decayed(4.0, 2.0, 100.0, 101.0) == pytest.approx(2.0)
    assert decayed(4.0, 2.0, 100.0, 110.0) == 0.0
    assert decayed(4.0, 0.0, 100.0, 500.0) == 4.0  # a plain limit never decays
    assert decayed(4.0, 2.0, 100.0, 99.0) == 4.0  # a clock behind decayed_at: no change


def test_seconds_until_room_is_computed_from_the_decay() -> None:
    assert seconds_until_room(5, 5, 1, 10.0) == pytest.approx(0.1)
    assert seconds_until_room(5, 5, 3, 2.0) == pytest.approx(1.5)
    assert seconds_until_room(2, 5, 1, 2.0) == 0.0
    assert seconds_until_room(5, 5, 1, 0.0) is None


def test_release_never_goes_negative() -> None:
    assert released(3, 1) == 2
    assert released(0.4, 1) == 0.0


# -- the grant decision ---------------------------------------------------------------------
def test_grant_when_every_limit_has_room_and_nobody_is_ahead() -> None:
    states = {"a": state("a", 2, 1), "b": state("b", 5, 4)}
    d = decide(("a", "b"), 1, "concurrency", states, {})
    assert d.grant and d.limited == ("a", "b")


def test_all_or_nothing_wait_when_one_limit_is_full() -> None:
    states = {"a": state("a", 2, 0), "b": state("b", 1, 1)}
    d = decide(("a", "b"), 1, "concurrency", states, {})
    assert not d.grant
    assert d.blocked == ("b",)
    assert "full" in d.reasons[0]


def test_no_barging_past_a_queued_request_even_with_room() -> None:
    states = {"a": state("a", 5, 0)}
    d = decide(("a",), 1, "concurrency", states, {"a": (1, 3)})
    assert not d.grant
    assert "ahead" in d.reasons[0]


def test_unknown_and_inactive_names_take_nothing() -> None:
    states = {"off": state("off", 1, 1, active=False)}
    d = decide(("nope", "off"), 1, "concurrency", states, {})
    assert d.grant and d.limited == () and d.unknown == ("nope",) and d.inactive == ("off",)


def test_occupy_above_the_limit_fails_at_once() -> None:
    with pytest.raises(ValidationError, match="its limit is 2"):
        decide(("a",), 3, "concurrency", {"a": state("a", 2)}, {})


def test_a_limit_of_0_refuses_every_request_at_once() -> None:
    # A kill switch: LimitClosed (a ConcurrencySlotAcquisitionError), not a wait,
    # whatever the mode or the size; disabled, a limit of 0 admits everything.
    for mode, decay in (("concurrency", 0.0), ("rate", 1.0)):
        with pytest.raises(LimitClosed, match="'z' is 0: nothing is admitted"):
            decide(
                ("a", "z"),
                1,
                mode,
                {"a": state("a", 2, decay=decay), "z": state("z", 0, decay=decay)},
                {},
            )
    with pytest.raises(LimitClosed, match="tag 'io' is 0"):
        decide(("tag:io",), 1, "concurrency", {"tag:io": state("tag:io", 0)}, {})
    off = decide(("z",), 3, "concurrency", {"z": state("z", 0, active=False)}, {})
    assert off.grant and off.inactive == ("z",)
    assert validate_limit(0) == 0


def test_rate_limit_needs_decay() -> None:
    with pytest.raises(ValidationError, match="no slot decay"):
        decide(("a",), 1, "rate", {"a": state("a", 2)}, {})


def test_rate_wait_counts_the_tokens_queued_ahead() -> None:
    states = {"r": state("r", 5, 5, decay=10.0)}
    alone = decide(("r",), 1, "rate", states, {})
    behind = decide(("r",), 1, "rate", states, {"r": (2, 4)})
    assert alone.retry_after == pytest.approx(0.1)
    assert behind.retry_after == pytest.approx(0.5)
    plain = decide(("p",), 1, "concurrency", {"p": state("p", 1, 1)}, {})
    assert plain.retry_after is None  # a plain limit waits for a release


# -- order ---------------------------------------------------------------------------------
def test_order_is_fifo_within_priority_and_higher_priority_first() -> None:
    assert is_ahead(0, 1, 0, 2)
    assert not is_ahead(0, 2, 0, 1)
    assert is_ahead(5, 9, 0, 1)
    assert is_ahead(0, 1, 0, NOT_QUEUED)


def q(wid: str, slots: int, *names: str, seq: int, priority: int = 0) -> QueuedRequest:
    return QueuedRequest(wid, priority, seq, slots, frozenset(names))


def test_plan_wakes_the_fifo_prefix_that_fits() -> None:
    queue = [q("w1", 1, "a", seq=1), q("w2", 1, "a", seq=2), q("w3", 1, "a", seq=3)]
    assert plan_wakeups({"a": 2}, queue) == ["w1", "w2"]


def test_plan_does_not_let_small_requests_pass_a_big_one() -> None:
    queue = [q("big", 3, "a", seq=1), q("small", 1, "a", seq=2)]
    assert plan_wakeups({"a": 2}, queue) == []
    assert plan_wakeups({"a": 3}, queue) == ["big"]
    assert plan_wakeups({"a": 4}, queue) == ["big", "small"]


def test_plan_respects_priority_then_sequence() -> None:
    queue = [q("old", 1, "a", seq=1), q("urgent", 1, "a", seq=9, priority=5)]
    assert plan_wakeups({"a": 1}, queue) == ["urgent"]


def test_plan_blocked_multi_limit_request_closes_all_its_limits() -> None:
    queue = [q("ab", 1, "a", "b", seq=1), q("a-only", 1, "a", seq=2), q("c", 1, "c", seq=3)]
    # b has no room: "ab" is stuck, so "a-only" may not pass it on a; c is independent.
    assert plan_wakeups({"a": 1, "b": 0, "c": 1}, queue) == ["c"]


def test_plan_ignores_names_without_an_active_limit() -> None:
    queue = [q("w", 1, "gone", "a", seq=1)]
    assert plan_wakeups({"a": 1}, queue) == ["w"]


# -- leases and liveness ------------------------------------------------------------------
def test_renewal_happens_at_a_third_of_the_lease() -> None:
    assert renew_interval(30) == pytest.approx(10)
    assert renew_interval(1) == pytest.approx(1 / 3)


def test_poll_interval_grows_from_20ms_to_a_cap_of_250ms() -> None:
    seen = [next_poll_interval(None)]
    for _ in range(20):
        seen.append(next_poll_interval(seen[-1]))
    assert seen[0] == pytest.approx(0.02)
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(0.25)


def test_a_process_is_dead_only_when_certain() -> None:
    rec = ProcessRecord(pid=42, node="boot/ns", proc_start=1000)
    assert is_dead(rec, "boot/ns", {42: None})  # pid gone
    assert is_dead(rec, "boot/ns", {42: 2000})  # pid reused by a newer process
    assert not is_dead(rec, "boot/ns", {42: 1000})  # the same process, alive
    assert not is_dead(rec, "other/ns", {42: None})  # another node: only expiry decides
    assert not is_dead(rec, "boot/ns", {})  # unknown (could not read): alive
    assert not is_dead(ProcessRecord(42, "boot/ns", 0), "boot/ns", {42: None})  # no start time
    assert not is_dead(rec, None, {42: None})
