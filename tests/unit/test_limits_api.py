"""The concurrency API is small and fixed: the same names and signatures, sync and asyncio."""

from __future__ import annotations

import inspect

import headway.concurrency.asyncio as aio
import headway.concurrency.sync as sync
from headway.concurrency.tags import hold_tag_slots


def test_exported_names_are_locked() -> None:
    assert sorted(sync.__all__) == ["HeldSlots", "concurrency", "rate_limit"]
    assert sorted(aio.__all__) == ["HeldSlots", "concurrency", "rate_limit"]


def test_sync_and_asyncio_have_the_same_signatures() -> None:
    for name in ("concurrency", "rate_limit"):
        assert (
            inspect.signature(getattr(sync, name)).parameters
            == inspect.signature(getattr(aio, name)).parameters
        )
    assert list(inspect.signature(sync.concurrency).parameters) == [
        "names",
        "occupy",
        "timeout_seconds",
        "strict",
        "priority",
    ]
    assert list(inspect.signature(sync.rate_limit).parameters) == [
        "names",
        "occupy",
        "timeout_seconds",
        "strict",
    ]
    assert inspect.iscoroutinefunction(aio.rate_limit)
    assert not inspect.iscoroutinefunction(sync.rate_limit)


def test_the_async_flavour_is_a_thin_wrapper_of_the_same_core() -> None:
    # One core: both flavours build the same Acquisition; only the waiting differs.
    from headway.concurrency._core import Acquisition

    assert sync.Acquisition is Acquisition and aio.Acquisition is Acquisition


def test_task_engine_hook_signature() -> None:
    params = inspect.signature(hold_tag_slots).parameters
    assert list(params) == ["client", "tags", "task_run_id", "flow_run_id"]
    assert params["task_run_id"].kind is inspect.Parameter.KEYWORD_ONLY
