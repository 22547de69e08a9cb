"""``headway flow-run`` on every backend (in-process: the CLI's own code, each store)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from headway import flow, get_run_logger, task
from headway.cli import main
from headway.client.base import Client
from headway.context import get_flow_run_context


@task
def step(x: int) -> int:
    get_run_logger().info("step %d", x)
    return x + 1


@flow
def inner(x: int) -> int:
    return step(x)


@flow
def outer(x: int) -> str:
    step.map([x, x + 1]).wait()
    inner(x)
    ctx = get_flow_run_context()
    assert ctx is not None
    return ctx.flow_run_id


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run_cli(capsys, *args, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def test_flow_run_commands_on_every_backend(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    outer_id = outer(1)
    capsys.readouterr()
    rows = as_json(capsys, "flow-run", "ls")
    assert {r["flow_name"] for r in rows} == {"outer", "inner"}
    assert all(r["state"]["type"] == "COMPLETED" for r in rows)
    assert [r["flow_name"] for r in as_json(capsys, "flow-run", "ls", "--flow", "inner")] == [
        "inner"
    ]
    assert as_json(capsys, "flow-run", "ls", "--state", "FAILED") == []
    detail = as_json(capsys, "flow-run", "inspect", outer_id)
    assert detail["parameters"] == {"x": 1}
    assert sorted(t["name"] for t in detail["task_runs"]) == ["inner-0", "step-0", "step-1"]
    assert detail["start_time"] <= detail["end_time"]
    inner_id = next(r["id"] for r in rows if r["flow_name"] == "inner")
    child = as_json(capsys, "flow-run", "inspect", inner_id)
    assert child["parent_flow_run_id"] == outer_id
    code, out, _ = run_cli(capsys, "flow-run", "inspect", inner_id)
    assert code == 0 and outer_id in out and "inner-0" in out
    code, out, _ = run_cli(capsys, "flow-run", "ls")
    assert code == 0 and "outer" in out and "inner" in out
    code, out, _ = run_cli(capsys, "flow-run", "logs", outer_id)
    assert code == 0
    assert "Task run 'step-0' - step 1" in out and "Task run 'step-1' - step 2" in out
    code, _, err = run_cli(capsys, "flow-run", "inspect", "not-a-run")
    assert code == 2 and err.strip() == "Error: no flow run with id not-a-run"


@pytest.mark.parametrize("value", [str(10**30), str(2**63), str(2**64)])
def test_a_huge_limit_is_one_line_exit_2(
    client: Client, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    code, _, err = run_cli(capsys, "flow-run", "ls", "--limit", value)
    assert code == 2, err
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert run_cli(capsys, "flow-run", "ls")[0] == 0  # the store is fine afterwards
