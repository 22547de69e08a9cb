"""Claiming policy (core/claiming.py): the claim order over concurrency keys, and the
collision strategies. Pure logic, no store."""

from __future__ import annotations

from headway.core.claiming import Candidate, collision, round_robin_order
from headway.core.deployments import CANCEL_IN_PROGRESS, CANCEL_NEW, ENQUEUE


# -- round-robin between keys ----------------------------------------------------------
def candidate(run_id: str, key: str | None, t: float, deployment: str = "f/d") -> Candidate:
    return Candidate(run_id, deployment, "default", 0, t, "{}", key, "Scheduled", None, t)


def test_keys_take_turns_in_their_deployments_places() -> None:
    cands = [
        candidate("a1", "a", 1),
        candidate("a2", "a", 2),
        candidate("a3", "a", 3),
        candidate("x", None, 3.5, deployment="other/d"),
        candidate("b1", "b", 4),
    ]
    round_robin_order(cands, {})
    order = [c.id for c in sorted(cands, key=lambda c: c.order)]
    # b takes the second place of f/d; the other deployment keeps its FIFO place.
    assert order == ["a1", "b1", "a2", "x", "a3"]


def test_least_recently_served_key_goes_first() -> None:
    cands = [candidate("a1", "a", 1), candidate("b1", "b", 2)]
    round_robin_order(cands, {"f/d\x00a": 100.0, "f/d\x00b": 50.0})
    assert [c.id for c in sorted(cands, key=lambda c: c.order)] == ["b1", "a1"]


def test_priority_comes_before_round_robin() -> None:
    cands = [candidate("a1", "a", 1), candidate("b1", "b", 2)]
    cands[1].priority = 5
    round_robin_order(cands, {})
    assert [c.id for c in sorted(cands, key=lambda c: c.order)] == ["b1", "a1"]


def test_queue_priority_comes_after_run_priority_and_before_time() -> None:
    cands = [candidate("early", None, 1), candidate("urgent-queue", None, 2)]
    cands[1].queue_priority = 3
    round_robin_order(cands, {})
    assert [c.id for c in sorted(cands, key=lambda c: c.order)] == ["urgent-queue", "early"]
    cands[0].priority = 1
    round_robin_order(cands, {})
    assert [c.id for c in sorted(cands, key=lambda c: c.order)] == ["early", "urgent-queue"]


def test_one_key_keeps_plain_fifo() -> None:
    cands = [candidate("a2", "a", 2), candidate("a1", "a", 1)]
    round_robin_order(cands, {"f/d\x00a": 5.0})
    assert [c.id for c in sorted(cands, key=lambda c: c.order)] == ["a1", "a2"]


# -- collision strategies ----------------------------------------------------------------
def test_enqueue_waits_and_cancels_nobody() -> None:
    outcome = collision(ENQUEUE, "r2", "deployment:f/d", 1)
    assert outcome.waits
    assert outcome.cancel_new is None and outcome.supersede is None


def test_cancel_new_cancels_the_new_run_and_names_the_limit() -> None:
    outcome = collision(CANCEL_NEW, "r2", "deployment:f/d", 2)
    assert not outcome.waits
    assert outcome.supersede is None
    assert outcome.cancel_new == (
        "deployment concurrency limit 'deployment:f/d' (2) is full; collision strategy CANCEL_NEW"
    )


def test_cancel_in_progress_supersedes_the_others_and_waits() -> None:
    outcome = collision(CANCEL_IN_PROGRESS, "r2", "deployment:f/d:k", 1)
    assert outcome.waits
    assert outcome.cancel_new is None
    assert (
        outcome.supersede == "superseded by newer run r2 (CANCEL_IN_PROGRESS on 'deployment:f/d:k')"
    )


def test_an_unknown_strategy_waits_like_enqueue() -> None:
    assert collision("SOMETHING_ELSE", "r2", "deployment:f/d", 1) == collision(
        ENQUEUE, "r2", "deployment:f/d", 1
    )
