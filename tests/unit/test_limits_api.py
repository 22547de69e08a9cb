"""The concurrency API is small and fixed: the same names and signatures, sync and asyncio."""

from __future__ import annotations

import inspect

import headway.concurrency.asyncio as aio
import headway.concurrency.sync as sync
import headway.concurrency.v1.asyncio as v1_aio
import headway.concurrency.v1.sync as v1_sync
from headway.concurrency.tags import hold_tag_slots


def test_exported_names_are_locked() -> None:
    # The two errors are importable from here, as from Prefect's modules.
    expected = [
        "AcquireConcurrencySlotTimeoutError",
        "ConcurrencySlotAcquisitionError",
        "HeldSlots",
        "concurrency",
        "rate_limit",
    ]
    assert sorted(sync.__all__) == expected
    assert sorted(aio.__all__) == expected
    v1 = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError", "concurrency"]
    assert sorted(v1_sync.__all__) == v1
    assert sorted(v1_aio.__all__) == v1


def test_sync_and_asyncio_have_the_same_signatures() -> None:
    for name in ("concurrency", "rate_limit"):
        assert (
            inspect.signature(getattr(sync, name)).parameters
            == inspect.signature(getattr(aio, name)).parameters
        )
    # Prefect's parameters in Prefect's order (positional calls keep their
    # meaning), then headway's own, keyword-only.
    assert list(inspect.signature(sync.concurrency).parameters) == [
        "names",
        "occupy",
        "timeout_seconds",
        "max_retries",
        "lease_duration",
        "strict",
        "holder",
        "raise_on_lease_renewal_failure",
        "priority",
    ]
    assert inspect.signature(sync.concurrency).parameters["priority"].kind is (
        inspect.Parameter.KEYWORD_ONLY
    )
    assert (
        inspect.signature(v1_sync.concurrency).parameters
        == inspect.signature(v1_aio.concurrency).parameters
    )
    assert list(inspect.signature(v1_sync.concurrency).parameters) == [
        "names",
        "task_run_id",
        "timeout_seconds",
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
