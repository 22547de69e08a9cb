"""Utilization while waiting: the share of a limit held while anyone waited."""

from __future__ import annotations

import pytest

from headway.core.utilization import utilization_while_waiting


def test_nobody_waited_means_nothing_to_measure() -> None:
    u = utilization_while_waiting([(0, 10, 2)], [], limit=2, start=0, end=10)
    assert u.share is None and u.waiting_seconds == 0.0 and u.window_seconds == 10


def test_slots_free_while_someone_waits_are_capacity_lost() -> None:
    # Limit 2: one slot held all along, the other free; someone waits 4 s.
    u = utilization_while_waiting([(0, 10, 1)], [(2, 6)], limit=2, start=0, end=10)
    assert u.share == pytest.approx(0.5)
    assert u.waiting_seconds == pytest.approx(4.0)


def test_a_slot_handed_straight_on_is_fully_used() -> None:
    # Limit 1: A holds 0..3, B waited 1..3 and holds 3..5 at once: 100 %.
    holds = [(0, 3, 1), (3, 5, 1)]
    u = utilization_while_waiting(holds, [(1, 3)], limit=1, start=0, end=5)
    assert u.share == pytest.approx(1.0)
    # The same with a 1 s gap before B got it: 2 of 3 waiting seconds held.
    holds = [(0, 3, 1), (4, 6, 1)]
    u = utilization_while_waiting(holds, [(1, 4)], limit=1, start=0, end=6)
    assert u.share == pytest.approx(2 / 3)


def test_intervals_are_cut_to_the_window_and_over_limit_counts_as_full() -> None:
    holds = [(-100, 100, 5)]  # more than a lowered limit of 2
    u = utilization_while_waiting(holds, [(-50, 50)], limit=2, start=0, end=10)
    assert u.share == pytest.approx(1.0)
    assert u.waiting_seconds == pytest.approx(10.0)


def test_overlapping_waits_count_their_time_once() -> None:
    u = utilization_while_waiting([], [(0, 4), (2, 6)], limit=3, start=0, end=10)
    assert u.share == pytest.approx(0.0)
    assert u.waiting_seconds == pytest.approx(6.0)


def test_an_empty_window_or_no_capacity() -> None:
    assert utilization_while_waiting([], [(0, 1)], limit=0, start=0, end=1).share is None
    assert utilization_while_waiting([], [(0, 1)], limit=1, start=5, end=5).share is None
