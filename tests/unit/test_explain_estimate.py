"""The estimated start of a waiting request (``headway.explain.estimate_start``): pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from headway.explain import estimate_start

NOW = 1_000_000.0


def estimate(**kw: Any) -> tuple[float | None, str]:
    args: dict[str, Any] = {
        "now": NOW,
        "limit": 1,
        "active_slots": 1.0,
        "decay_per_second": 0.0,
        "holders": [(NOW - 2, 1)],
        "ahead": [],
        "slots_ahead": 0,
        "occupy": 1,
        "average_hold": 5.0,
    }
    args.update(kw)
    return estimate_start(**args)


def test_next_in_line_starts_when_the_holder_is_expected_to_let_go() -> None:
    seconds, note = estimate()
    assert seconds == pytest.approx(3.0)  # held 2 s of an average 5 s
    assert "average hold time of 5s" in note


def test_each_request_ahead_holds_for_the_average() -> None:
    seconds, _ = estimate(ahead=[1, 1], slots_ahead=2)
    assert seconds == pytest.approx(3.0 + 5.0 + 5.0)


def test_requests_not_listed_count_one_slot_each() -> None:
    listed, _ = estimate(ahead=[1], slots_ahead=3)
    assert listed == pytest.approx(3.0 + 3 * 5.0)


def test_a_free_slot_is_taken_by_whoever_is_ahead_first() -> None:
    free_now, _ = estimate(limit=2)
    assert free_now == 0.0
    behind, _ = estimate(limit=2, ahead=[1], slots_ahead=1)
    assert behind == pytest.approx(3.0)


def test_a_large_request_waits_for_enough_slots_together() -> None:
    seconds, _ = estimate(limit=3, active_slots=3.0, holders=[(NOW - 4, 1), (NOW - 1, 2)], occupy=3)
    assert seconds == pytest.approx(4.0)  # both holders must let go: the later at +4 s


def test_a_holder_past_the_average_may_let_go_any_moment() -> None:
    seconds, note = estimate(holders=[(NOW - 60, 1)])
    assert seconds == 0.0
    assert "longer than average" in note


def test_no_estimate_without_history_or_with_slots_taken_by_hand() -> None:
    seconds, note = estimate(average_hold=None)
    assert seconds is None and "no slot of this limit has been given back" in note
    seconds, note = estimate(holders=[])
    assert seconds is None and "without a lease" in note


def test_rate_limits_wait_for_decay() -> None:
    seconds, note = estimate(limit=2, active_slots=2.0, decay_per_second=0.5, holders=[])
    assert seconds == pytest.approx(2.0)  # one token drains in 2 s
    assert "rate limit" in note
    seconds, _ = estimate(limit=2, active_slots=2.0, decay_per_second=0.5, slots_ahead=2)
    assert seconds == pytest.approx(6.0)  # three tokens: two ahead, then ours


def test_a_very_long_queue_uses_the_throughput() -> None:
    seconds, note = estimate(limit=10, slots_ahead=50_000, ahead=[1] * 10)
    assert seconds == pytest.approx((50_000 + 1) / 10 * 5.0)
    assert "50000 slot(s) ahead" in note
