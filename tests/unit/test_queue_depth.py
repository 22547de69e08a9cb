"""A handoff reads only the head of each queue (``queue_depth``): never a different plan.

By property (hypothesis, derandomized): for any limits (active or not, any
free room, rate limits' fractional room included) and any queue of weighted,
prioritized, multi-name requests, planning over the heads alone (each limit's
first ``queue_depth`` requests, with all their names) grants exactly what
planning over the whole queue grants, in the same order.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from headway.core.limits import LimitState, QueuedRequest, plan_wakeups, queue_depth, queue_key

NAMES = ("a", "b", "c")


@st.composite
def scenes(draw: st.DrawFn) -> tuple[dict[str, LimitState], list[QueuedRequest]]:
    limits = {}
    for name in NAMES:
        if draw(st.booleans()):  # else unknown: deleted, or never made
            size = draw(st.integers(1, 5))
            used = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.75, 4.0, 5.0]))
            limits[name] = LimitState(
                name=name,
                limit=size,
                active=draw(st.booleans()),
                active_slots=min(used, float(size)),
                decay_per_second=0.0,
            )
    count = draw(st.integers(0, 14))
    queue = [
        QueuedRequest(
            f"w{seq}",
            draw(st.integers(0, 2)),
            seq,
            draw(st.integers(1, 3)),
            frozenset(draw(st.sets(st.sampled_from(NAMES), min_size=1, max_size=3))),
        )
        for seq in range(count)
    ]
    return limits, queue


@settings(max_examples=200, derandomize=True, deadline=None)
@given(scenes())
def test_the_heads_of_the_queues_plan_what_the_whole_queue_plans(
    scene: tuple[dict[str, LimitState], list[QueuedRequest]],
) -> None:
    limits, queue = scene
    free = {s.name: s.free for s in limits.values() if s.active}
    heads: set[str] = set()
    for name in NAMES:
        on_it = sorted(
            (r for r in queue if name in r.names), key=lambda r: queue_key(r.priority, r.seq)
        )
        depth = queue_depth(limits.get(name))
        heads.update(r.waiter_id for r in on_it[:depth])
    assert plan_wakeups(free, [r for r in queue if r.waiter_id in heads]) == plan_wakeups(
        free, queue
    )


def test_the_depth_is_the_whole_room_and_one_more() -> None:
    def state(limit: int, used: float, *, active: bool = True) -> LimitState:
        return LimitState("x", limit, active, used, 0.0)

    assert queue_depth(state(4, 0.0)) == 5
    assert queue_depth(state(4, 4.0)) == 1
    assert queue_depth(state(4, 1.5)) == 3  # a rate limit's decayed room: 2.5 slots
    assert queue_depth(state(4, 0.0, active=False)) is None
    assert queue_depth(None) is None
