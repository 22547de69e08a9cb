"""Every object read with ``-o json`` carries a stable ``id`` and ``created``/``updated``.

Prefect's objects all have an ``id`` (a UUID) and ``created``/``updated``
times, and its ``ls``/``inspect`` commands show them. headway's limits and work
pools are keyed by their name, and have an ``id`` besides it, stable across
reads and changes. The CLI runs in this process against each test's own store.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from headway.client.base import get_client
from helpers.cli import Captured, ok, ok_json


def _record(item: dict[str, Any]) -> tuple[str, datetime, datetime]:
    """The id (a UUID) and times of one JSON object; created <= updated."""
    assert str(uuid.UUID(item["id"])) == item["id"]
    created = datetime.fromisoformat(item["created"])
    updated = datetime.fromisoformat(item["updated"])
    assert created.tzinfo is not None and created <= updated
    return item["id"], created, updated


def test_global_and_tag_limits_have_ids_and_times(capsys: Captured) -> None:
    """Prefect: ``test_inspecting_gcl_with_json_output`` (``id``, ``name``, ``limit`` in
    ``gcl inspect -o json``) and ``test_listing_concurrency_limits_json_output`` (each
    tag limit's ``id`` in ``concurrency-limit ls -o json``) in
    tests/cli/test_global_concurrency_limit.py; Prefect's ``gcl ls`` table shows ``created``
    and ``updated`` too. The id stays the same through a change; ``updated`` moves."""
    ok(capsys, "gcl", "create", "db", "--limit", "2")
    ok(capsys, "concurrency-limit", "create", "io", "1")
    inspected = ok_json(capsys, "gcl", "inspect", "db")
    db_id, created, first = _record(inspected)
    assert (inspected["name"], inspected["limit"]) == ("db", 2)
    assert first == created
    listed = {item["name"]: item for item in ok_json(capsys, "gcl", "ls")}
    assert listed["db"]["id"] == db_id
    tags = ok_json(capsys, "concurrency-limit", "ls")
    [(io_id, _, _)] = [_record(item) for item in tags]
    assert io_id != db_id
    assert ok_json(capsys, "concurrency-limit", "inspect", "io")["id"] == io_id
    ok(capsys, "gcl", "update", "db", "--limit", "3")
    changed = ok_json(capsys, "gcl", "inspect", "db")
    assert _record(changed)[:2] == (db_id, created)
    assert _record(changed)[2] > first
    assert db_id in ok(capsys, "gcl", "inspect", "db")


def test_work_pools_and_queues_have_ids_and_times(capsys: Captured) -> None:
    """Prefect: ``TestInspect.test_inspect_with_json_output`` (the pool's ``id``) and
    ``TestInspect.test_inspect`` (the id shown in the table) in tests/cli/test_work_pool.py,
    ``TestLS.test_ls_json_output`` there, and ``TestInspectWorkQueue.test_inspect_with_json_output``
    in tests/cli/test_work_queues.py."""
    ok(capsys, "work-pool", "create", "p")
    pool = ok_json(capsys, "work-pool", "inspect", "p")
    pool_id, created, updated = _record(pool)
    assert updated == created
    [queue] = pool["queues"]
    queue_id, _, _ = _record(queue)
    assert [item["id"] for item in ok_json(capsys, "work-pools", "ls")] == [pool_id]
    assert ok_json(capsys, "work-queue", "inspect", "default", "--pool", "p")["id"] == queue_id
    assert [_record(q)[0] for q in ok_json(capsys, "work-queue", "ls")] == [queue_id]
    ok(capsys, "work-pool", "set-concurrency-limit", "p", "3")
    ok(capsys, "work-queue", "set-concurrency-limit", "default", "1", "--pool", "p")
    after = ok_json(capsys, "work-pool", "inspect", "p")
    assert _record(after)[:2] == (pool_id, created) and _record(after)[2] > updated
    assert _record(after["queues"][0])[2] > _record(queue)[2]
    assert pool_id in ok(capsys, "work-pool", "inspect", "p")


FLOWS = """
from headway import flow


@flow
def greet(name: str = "you") -> str:
    return name
"""


def test_deployments_and_flow_runs_have_ids_and_times(capsys: Captured, tmp_path: Path) -> None:
    """Prefect: ``TestDeploymentSchedules.test_deployment_inspect_json_output`` and
    ``TestDeploymentList.test_list_deployments_output_json`` in
    tests/cli/deployment/test_deployment_cli.py, ``test_inspect_flow_run_with_json_output``
    and ``test_ls_json_output`` in tests/cli/test_flow_run.py: each carries its ``id``. A flow
    run's ``updated`` moves when its state changes."""
    (tmp_path / "flows.py").write_text(FLOWS)
    ok(capsys, "work-pool", "create", "p")
    ok(capsys, "deploy", str(tmp_path / "flows.py") + ":greet", "--name", "d", "--pool", "p",
       "--project-root", str(tmp_path))  # fmt: skip
    dep_id, _, _ = _record(ok_json(capsys, "deployment", "inspect", "greet/d"))
    assert [_record(d)[0] for d in ok_json(capsys, "deployments", "ls")] == [dep_id]
    ok(capsys, "deployment", "run", "greet/d")
    [listed] = ok_json(capsys, "flow-run", "ls")
    run_id, created, updated = _record(listed)
    assert updated == created
    ok(capsys, "flow-run", "cancel", run_id)
    inspected = ok_json(capsys, "flow-run", "inspect", run_id)
    assert inspected["state"]["type"] == "CANCELLED"
    assert _record(inspected)[:2] == (run_id, created) and _record(inspected)[2] > updated
    assert get_client().read_flow_run(run_id).updated == datetime.fromisoformat(
        inspected["updated"]
    )


def test_task_runs_in_flow_run_inspect_have_ids_and_times(capsys: Captured) -> None:
    """Prefect: ``test_inspect_task_run_with_json_output`` in tests/cli/test_task_run.py (the
    task run's ``id``; its objects have ``created``/``updated``). headway shows task runs in
    ``flow-run inspect -o json``; a task run changes only by its states, so its ``updated``
    is its latest state's time."""
    from headway import flow, task

    @task
    def one() -> int:
        return 1

    @flow
    def two() -> int:
        return one() + one()

    assert two() == 2
    [run] = ok_json(capsys, "flow-run", "ls")
    tasks = ok_json(capsys, "flow-run", "inspect", run["id"])["task_runs"]
    assert len(tasks) == 2 and len({t["id"] for t in tasks}) == 2
    for item in tasks:
        _, created, updated = _record(item)
        assert item["state"]["type"] == "COMPLETED"
        assert updated == datetime.fromisoformat(item["state"]["timestamp"]) >= created
