"""``headway flow-run ls | inspect | logs`` on runs a real program recorded.

The program runs in its own process; the commands in the test's (tests/helpers/cli.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import headway

PROGRAM = """
from headway import flow, task, get_run_logger

@task(retries=1, retry_delay_seconds=0)
def flaky(box):
    box.append(1)
    if len(box) == 1:
        raise ValueError("first try")
    return len(box)

@task
def shout(word):
    get_run_logger().info("shouting %s", word)
    return word.upper()

@flow
def child(n):
    return n + 1

@flow(log_prints=True)
def etl(word: str, n: int = 2):
    print("starting etl")
    return shout(word), flaky([]), child(n)

@flow
def broken():
    raise RuntimeError("it broke")

if __name__ == "__main__":
    etl("hi")
    try:
        broken()
    except RuntimeError:
        pass
"""


def headway_json(*args: str) -> Any:
    result = headway(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the program once in its own HEADWAY_HOME; return the ids it made."""
    home = tmp_path_factory.mktemp("cli-home")
    script = home / "program.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "HEADWAY_HOME": str(home)}
    for var in ("HEADWAY_API_URL", "HEADWAY_DATABASE_URL"):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return {"home": home}


@pytest.fixture(autouse=True)
def _use_recorded_home(
    recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch, headway_home: Path
) -> None:
    monkeypatch.setenv("HEADWAY_HOME", str(recorded["home"]))


def test_ls_json_rows_carry_the_documented_fields(recorded: dict[str, Any]) -> None:
    rows = headway_json("flow-run", "ls")
    by_flow = {r["flow_name"]: r for r in rows}
    assert set(by_flow) == {"etl", "child", "broken"}
    for row in rows:
        for key in ("id", "name", "flow_name", "deployment", "state", "parameters"):
            assert key in row
        assert row["state"]["type"] in {"COMPLETED", "FAILED"}
        assert row["start_time"].endswith("+00:00") and row["end_time"].endswith("+00:00")
        assert "task_runs" not in row
    assert by_flow["etl"]["parameters"] == {"word": "hi", "n": 2}
    assert by_flow["etl"]["state"] == {**by_flow["etl"]["state"], "type": "COMPLETED"}
    assert by_flow["broken"]["state"]["type"] == "FAILED"
    assert by_flow["broken"]["state"]["name"] == "Failed"
    assert by_flow["broken"]["state"]["message"] == "RuntimeError: it broke"
    assert [r["flow_name"] for r in headway_json("flow-run", "ls", "--state", "failed")] == [
        "broken"
    ]
    assert len(headway_json("flow-run", "ls", "--limit", "1")) == 1


def test_inspect_json_has_task_runs_history_and_parent(recorded: dict[str, Any]) -> None:
    rows = {r["flow_name"]: r for r in headway_json("flow-run", "ls")}
    etl = headway_json("flow-run", "inspect", rows["etl"]["id"])
    assert etl["id"] == rows["etl"]["id"] and etl["deployment"] is None
    assert [s["type"] for s in etl["state_history"]] == ["PENDING", "RUNNING", "COMPLETED"]
    tasks = {t["name"]: t for t in etl["task_runs"]}
    assert set(tasks) == {"shout-0", "flaky-0", "child-0"}
    assert tasks["flaky-0"]["run_count"] == 2
    assert all(t["state"]["type"] == "COMPLETED" for t in tasks.values())
    child = headway_json("flow-run", "inspect", rows["child"]["id"])
    assert child["parent_flow_run_id"] == etl["id"]
    assert child["parent_task_run_id"] == tasks["child-0"]["id"]
    table = headway("flow-run", "inspect", rows["child"]["id"])
    assert table.returncode == 0
    assert f"flow run {etl['id']}" in table.stdout and "child-0" in table.stdout


def test_ls_and_inspect_tables(recorded: dict[str, Any]) -> None:
    listing = headway("flow-run", "ls")
    assert listing.returncode == 0, listing.stderr
    for word in ("etl", "child", "broken", "COMPLETED", "FAILED"):
        assert word in listing.stdout
    etl_id = next(r["id"] for r in headway_json("flow-run", "ls") if r["flow_name"] == "etl")
    shown = headway("flow-run", "inspect", etl_id)
    assert shown.returncode == 0, shown.stderr
    assert "shout-0" in shown.stdout and "State history" in shown.stdout


def test_logs_print_flow_and_task_lines_in_order(recorded: dict[str, Any]) -> None:
    etl_id = next(r["id"] for r in headway_json("flow-run", "ls") if r["flow_name"] == "etl")
    result = headway("flow-run", "logs", etl_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    text = "\n".join(lines)
    assert "Beginning flow run" in lines[0]
    assert "| INFO    | Flow run " in text and "starting etl" in text
    assert "Task run 'shout-0' - shouting hi" in text
    assert "Task run 'flaky-0'" in text and "retrying" in text
    assert "Finished in state Completed" in lines[-1]
    as_json = headway_json("flow-run", "logs", etl_id)
    assert as_json[0]["message"].startswith("Beginning flow run")
    assert {line["task_run_name"] for line in as_json} >= {"shout-0", "flaky-0", None}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("flow-run", "inspect", "no-such-run"), "Error: no flow run with id no-such-run"),
        (("flow-run", "logs", "no-such-run"), "Error: no flow run with id no-such-run"),
        (("flow-run", "ls", "--state", "sleepy"), "Error: unknown state 'sleepy'"),
        (("flow-run", "ls", "--limit", "0"), "Error: --limit must be at least 1"),
        (("flow-run", "ls", "--limit", "many"), "Error: "),
        (("flow-run", "ls", "-o", "yaml"), "Error: unknown output format 'yaml'"),
        (("flow-run", "inspect"), "Error: "),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    recorded: dict[str, Any], args: tuple[str, ...], message: str
) -> None:
    from headway.client.base import get_client

    client = get_client()
    before = [(r.id, r.state) for r in client.list_flow_runs(limit=100)]
    result = headway(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert [(r.id, r.state) for r in client.list_flow_runs(limit=100)] == before
