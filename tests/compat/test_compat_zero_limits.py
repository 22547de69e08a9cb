"""Limits of 0, as Prefect has them: allowed everywhere Prefect allows them, admitting nothing.

Prefect: a global limit of 0 refuses every request at once (the server's 422
"Slots requested is greater than the limit", raised by ``concurrency()`` as
``ConcurrencySlotAcquisitionError``, strict or not); a tag limit of 0 aborts
the task run, which never runs; a deployment limit of 0 aborts the claim, so
the run stays scheduled; a work pool limit of 0 gives out no runs. headway
does the same through its one slot engine, and says why (``gcl inspect``,
``why``). The CLI runs in this process against each test's own store.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from headway import flow, task
from headway.client.base import get_client
from headway.concurrency.sync import concurrency, rate_limit
from headway.concurrency.v1 import sync as v1_sync
from headway.core.states import StateType
from headway.exceptions import ConcurrencySlotAcquisitionError
from helpers.cli import Captured, ok, ok_json, refused


def test_gcl_create_and_update_accept_a_limit_of_0(capsys: Captured) -> None:
    """Prefect: ``test_create_gcl_invalid_limit`` in tests/cli/test_global_concurrency_limit.py
    refuses a negative limit only (``GlobalConcurrencyLimitCreate.limit`` is a
    non-negative integer), and ``test_update_gcl_limit`` changes the limit; so
    ``gcl create NAME --limit 0`` and ``gcl update NAME --limit 0`` are allowed."""
    out = ok(capsys, "gcl", "create", "switch", "--limit", "0")
    assert "with limit 0: nothing is admitted" in out and "(id " in out
    ok(capsys, "gcl", "create", "db", "--limit", "3")
    assert "limit 0" in ok(capsys, "gcl", "update", "db", "--limit", "0")
    assert [(lim["name"], lim["limit"]) for lim in ok_json(capsys, "gcl", "ls")] == [
        ("db", 0),
        ("switch", 0),
    ]
    assert "limit is 0: nothing is admitted" in ok(capsys, "gcl", "inspect", "db")
    assert ok_json(capsys, "gcl", "inspect", "db")["limit"] == 0
    # Below 0 is still refused, and changes nothing.
    assert "limit" in refused(capsys, "gcl", "create", "neg", "--limit", "-1")
    assert "limit" in refused(capsys, "gcl", "update", "db", "--limit", "-1")
    assert get_client().read_limit("db").limit == 0


def test_concurrency_on_a_limit_of_0_fails_at_once(capsys: Captured) -> None:
    """Prefect: ``test_increment_concurrency_limit_slot_request_higher_than_limit`` in
    tests/server/orchestration/api/test_concurrency_limits_v2.py: a request for more slots
    than a limit has (every request, at 0) is answered 422 at once, which ``concurrency()``
    and ``rate_limit()`` raise as ``ConcurrencySlotAcquisitionError``, with or without
    ``strict`` and whatever ``timeout_seconds`` says; nothing is taken."""
    ok(capsys, "gcl", "create", "switch", "--limit", "0")
    ok(capsys, "gcl", "create", "tokens", "--limit", "0", "--slot-decay-per-second", "1")
    ran = []
    for strict in (False, True):
        with pytest.raises(ConcurrencySlotAcquisitionError, match="'switch' is 0"):
            with concurrency("switch", timeout_seconds=60, strict=strict):
                ran.append("concurrency")
    with pytest.raises(ConcurrencySlotAcquisitionError, match="'tokens' is 0"):
        with rate_limit("tokens", timeout_seconds=60):
            ran.append("rate_limit")
    assert ran == []
    [shown] = [lim for lim in ok_json(capsys, "gcl", "ls") if lim["name"] == "switch"]
    assert (shown["active_slots"], shown["waiters"]) == (0, 0)
    # A disabled limit of 0 applies to nobody, as a disabled limit never does.
    ok(capsys, "gcl", "disable", "switch")
    with concurrency("switch", timeout_seconds=5):
        ran.append("disabled")
    assert ran == ["disabled"]


def test_a_task_whose_tag_limit_is_0_never_runs(capsys: Captured) -> None:
    """Prefect: ``TestSecureTaskConcurrencySlotsV2Integration.test_v2_zero_limit_aborts_transition``
    in tests/server/orchestration/test_task_concurrency_v2_integration.py and
    ``TestTaskConcurrencyLimits.test_concurrency_limiting_aborts_transitions_with_zero_limit``
    in tests/server/orchestration/test_core_policy.py: a task run with a tag limited to 0 is
    aborted ("is 0 and will deadlock"), never delayed, and its body never runs. headway ends
    it FAILED at once with the reason (Prefect raises its ``Abort`` signal out of the run)."""
    assert "fail at once" in ok(capsys, "concurrency-limit", "create", "zero", "0")
    ran = []

    @task(tags=["zero"])
    def guarded() -> None:
        ran.append("guarded")

    @flow
    def uses_it() -> Any:
        return guarded(return_state=True)

    state = uses_it()
    assert state.type is StateType.FAILED
    assert "the concurrency limit on tag 'zero' is 0" in (state.message or "")
    assert ran == []


def test_v1_concurrency_on_a_tag_limited_to_0_fails_and_takes_nothing(capsys: Captured) -> None:
    """Prefect: ``TestAcquiringAndReleasing.test_setting_tag_to_zero_concurrency`` in
    tests/server/orchestration/api/test_concurrency_limits.py: asking for tags where one is
    limited to 0 is refused at once ("is 0 and will deadlock"; the v1 client raises it, with
    no retry) and no tag's slot is taken, nor one of a tag that has no limit."""
    ok(capsys, "concurrency-limit", "create", "a", "2")
    ok(capsys, "concurrency-limit", "create", "zero", "0")
    with pytest.raises(ConcurrencySlotAcquisitionError, match="tag 'zero' is 0"):
        with v1_sync.concurrency(["a", "zero", "does-not-exist"], uuid.uuid4()):
            pytest.fail("the block ran under a tag limit of 0")
    shown = {item["name"]: item for item in ok_json(capsys, "concurrency-limit", "ls")}
    assert [shown[n]["active_slots"] for n in ("tag:a", "tag:zero")] == [0, 0]


FLOWS = """
from headway import flow


@flow
def greet(name: str = "you") -> str:
    return name
"""


def _deployment(capsys: Captured, tmp_path: Path, *extra: str) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    ok(capsys, "deploy", str(tmp_path / "flows.py") + ":greet", "--name", "d", "--pool", "p",
       "--project-root", str(tmp_path), *extra)  # fmt: skip


def _claimed() -> list[str]:
    client = get_client()
    worker = client.register_worker("p", "w")
    assert worker.id is not None
    return [c.run.id for c in client.claim_flow_runs(worker.id, pool="p", limit=5)]


def _run_id(out: str) -> str:
    [run] = get_client().list_flow_runs(deployment="greet/d")
    assert run.id in out
    return run.id


def test_work_pool_concurrency_limit_of_0_gives_out_no_runs(
    capsys: Captured, tmp_path: Path
) -> None:
    """Prefect: ``TestLS.test_ls_with_zero_concurrency_limit`` in tests/cli/test_work_pool.py
    (``work-pool set-concurrency-limit P 0`` succeeds, and ``ls`` shows it) and
    ``test_update_work_pool_zero_concurrency`` in tests/server/models/test_workers.py; a pool
    with no open slots gives its workers no runs. headway's ``why`` says why the run waits."""
    ok(capsys, "work-pool", "create", "p")
    ok(capsys, "work-pool", "set-concurrency-limit", "p", "0")
    assert "0 (no runs start)" in ok(capsys, "work-pool", "ls")
    assert ok_json(capsys, "work-pool", "inspect", "p")["concurrency_limit"] == 0
    _deployment(capsys, tmp_path)
    run_id = _run_id(ok(capsys, "deployment", "run", "greet/d"))
    assert _claimed() == []
    why = ok(capsys, "why", run_id)
    assert "'pool:p' is 0: nothing is admitted until it is raised" in why
    ok(capsys, "work-pool", "update", "p", "--concurrency-limit", "1")
    assert _claimed() == [run_id]


def test_a_deployment_limit_of_0_holds_its_runs(capsys: Captured, tmp_path: Path) -> None:
    """Prefect: ``TestFlowConcurrencyLimits.test_zero_concurrency_limit`` in
    tests/server/orchestration/test_core_policy.py: with the deployment's concurrency limit
    at 0 the move to PENDING is aborted ("The deployment concurrency limit is 0"), so the
    run stays scheduled; its collision strategy is not applied. A deployment's own setting
    starts at 1 in both (Prefect's ``DeploymentUpdate.concurrency_limit`` is positive); the
    limit behind it is set to 0 through ``gcl update``."""
    ok(capsys, "work-pool", "create", "p")
    _deployment(capsys, tmp_path, "-cl", "1", "--collision-strategy", "CANCEL_NEW")
    assert "at least 1" in refused(capsys, "deployment", "set-concurrency-limit", "greet/d", "0")
    ok(capsys, "gcl", "update", "deployment:greet/d", "--limit", "0")
    run_id = _run_id(ok(capsys, "deployment", "run", "greet/d"))
    assert _claimed() == []
    shown = json.loads(ok(capsys, "flow-run", "inspect", run_id, "-o", "json"))
    assert shown["state"]["type"] == "SCHEDULED"  # not CANCELLED by CANCEL_NEW
    assert "'deployment:greet/d' is 0: nothing is admitted" in ok(capsys, "why", run_id)
    ok(capsys, "gcl", "update", "deployment:greet/d", "--limit", "1")
    assert _claimed() == [run_id]
