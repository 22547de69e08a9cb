"""The one back-off helper: pauses, jitter, bounds, interruption (a fake sleep and clock)."""

from __future__ import annotations

import random

import pytest

from headway._backoff import Backoff


class FakeTime:
    """A clock that moves only when slept on; records every pause."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.interrupt_after = interrupt_after

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return self.interrupt_after is not None and len(self.slept) >= self.interrupt_after


def test_nominal_pauses_grow_by_the_factor_up_to_the_cap() -> None:
    backoff = Backoff(first=0.05, cap=1.0)
    assert [backoff.nominal(i) for i in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert Backoff(0.1, 5.0, factor=1.5).nominal(2) == pytest.approx(0.225)
    assert Backoff(0.1, 0.1, factor=1.0).nominal(50) == 0.1


def test_a_huge_pause_number_is_the_cap_not_an_overflow() -> None:
    assert Backoff(0.01, 2.0).nominal(5000) == 2.0
    assert Backoff(0.01, 2.0).delay(10**6, random.Random(1)) <= 2.0


def test_each_pause_is_jittered_below_its_nominal_length_from_the_given_random() -> None:
    backoff = Backoff(first=1.0, cap=8.0, jitter=0.5)
    draws = random.Random(7)
    expected = [backoff.nominal(i) * (1 - 0.5 * draws.random()) for i in range(5)]
    rng = random.Random(7)
    got = [backoff.delay(i, rng) for i in range(5)]
    assert got == expected
    assert all(0.5 * backoff.nominal(i) <= d <= backoff.nominal(i) for i, d in enumerate(got))
    # Not in lockstep: two callers with different draws pause differently.
    assert got != [backoff.delay(i, random.Random(8)) for i in range(5)]


def test_no_jitter_means_exact_pauses() -> None:
    fake = FakeTime()
    retry = Backoff(0.02, 0.5, jitter=0).start(sleep=fake.sleep, clock=fake.clock)
    for _ in range(7):
        assert retry.pause()
    assert fake.slept == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]


def test_within_stops_before_a_pause_that_would_end_past_the_deadline() -> None:
    fake = FakeTime()
    retry = Backoff(0.05, 1.0, jitter=0).start(within=1.0, sleep=fake.sleep, clock=fake.clock)
    taken = 0
    while retry.pause():
        taken += 1
    # 0.05 + 0.1 + 0.2 + 0.4 = 0.75; the next (0.8) would end at 1.55 > 1.0.
    assert fake.slept == [0.05, 0.1, 0.2, 0.4] and taken == 4
    assert fake.now == pytest.approx(100.75)
    assert not retry.pause() and len(fake.slept) == 4  # refused without sleeping


def test_attempts_bounds_the_number_of_tries() -> None:
    fake = FakeTime()
    retry = Backoff(0.01, 1.0).start(attempts=6, sleep=fake.sleep, rng=random.Random(3))
    tries = 1
    while retry.pause():
        tries += 1
    assert tries == 6 and len(fake.slept) == 5
    with pytest.raises(ValueError):
        Backoff(0.01, 1.0).start(attempts=0)


def test_an_interrupted_sleep_ends_the_retries() -> None:
    fake = FakeTime(interrupt_after=2)
    retry = Backoff(0.1, 1.0).start(sleep=fake.sleep, clock=fake.clock, rng=random.Random(0))
    assert retry.pause()
    assert not retry.pause()
    assert len(fake.slept) == 2


def test_reset_starts_the_pauses_and_the_deadline_over() -> None:
    fake = FakeTime()
    retry = Backoff(0.1, 10.0, jitter=0).start(within=0.5, sleep=fake.sleep, clock=fake.clock)
    assert retry.pause() and retry.pause()  # 0.1, 0.2
    assert not retry.pause()  # 0.4 would end past 0.5
    retry.reset()
    assert retry.pause() and fake.slept == [0.1, 0.2, 0.1]


def test_a_loop_may_take_its_pauses_itself() -> None:
    retry = Backoff(0.1, 1.0, factor=1.5, jitter=0).start()
    assert retry.next_delay() == pytest.approx(0.1)
    retry.count()
    assert retry.next_delay() == pytest.approx(0.15)
    assert retry.pauses == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first": 0, "cap": 1},
        {"first": 2, "cap": 1},
        {"first": float("nan"), "cap": 1},
        {"first": 0.1, "cap": 1, "factor": 0.5},
        {"first": 0.1, "cap": 1, "jitter": 1.5},
        {"first": 0.1, "cap": 1, "jitter": -0.1},
    ],
)
def test_a_bad_shape_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
