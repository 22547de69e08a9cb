"""``headway deploy`` and ``headway deployment`` as users type them.

The commands run in this process (tests/helpers/cli.py); the worker that runs
the deployments is a real ``headway worker start`` subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import headway
from helpers.waiting import wait_until

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]

FLOWS = """
from headway.flows import flow


@flow
def greet(name: str, punctuation: str = "!"):
    print(f"hello {name}{punctuation}")
    return name


@flow
def boom():
    raise RuntimeError("this flow fails")
"""


def ok(*args: str) -> str:
    result = headway(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def bad(*args: str, message: str) -> None:
    result = headway(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.fixture
def flows(tmp_path: Path) -> str:
    path = tmp_path / "flows.py"
    path.write_text(FLOWS)
    ok("work-pool", "create", "pool")
    return f"{path}:greet"


def deployments() -> Any:
    return json.loads(ok("deployment", "ls", "-o", "json"))


def test_bad_input_is_one_line_exit_2_and_changes_nothing(flows: str, tmp_path: Path) -> None:
    base = ("deploy", flows, "--name", "hello", "--pool", "pool", "--param", "name=x")
    bad(*base, "--cron", "61 * * * *", message="invalid cron expression '61 * * * *'")
    bad(*base, "--interval", "0", message="interval must be greater than 0")
    bad(*base, "--timezone", "Nowhere/Land", "--cron", "0 * * * *", message="unknown timezone")
    bad("deploy", flows, "--name", "hello", "--pool", "nope", message="no work pool named 'nope'")
    bad(*base, "--concurrency-limit", "0", message="at least 1")
    bad(*base, "--concurrency-limit", "-1", message="at least 1")
    bad(*base, "--concurrency-limit", "1", "--collision-strategy", "LATER",
        message="unknown collision strategy 'LATER'")  # fmt: skip
    bad(*base, "--concurrency-limit", "1", "--concurrency-key", "{region}",
        message="unknown parameter")  # fmt: skip
    bad(*base, "--param", "nope=1", message="unknown parameter(s) 'nope'")
    bad("deploy", str(tmp_path / "missing.py:greet"), "--name", "x", "--pool", "pool",
        message="no such file")  # fmt: skip
    bad("deploy", flows.replace(":greet", ":nothing"), "--name", "x", "--pool", "pool",
        message="has no attribute 'nothing'")  # fmt: skip
    assert deployments() == []
    assert json.loads(ok("flow-run", "ls", "-o", "json")) == []


def test_deployment_commands(flows: str) -> None:
    out = ok("deploy", flows, "--name", "hello", "--pool", "pool", "--cron", "0 9 * * *",
             "--timezone", "Europe/Paris", "--param", "name=world")  # fmt: skip
    assert "greet/hello" in out
    (dep,) = deployments()
    assert dep["full_name"] == "greet/hello"
    assert dep["parameters"] == {"name": "world"}
    assert dep["schedules"][0]["schedule"] == {"cron": "0 9 * * *", "timezone": "Europe/Paris"}
    assert dep["concurrency_limit"] is None
    inspected = json.loads(ok("deployment", "inspect", "greet/hello", "-o", "json"))
    assert inspected["entrypoint"].endswith("flows.py:greet")
    ok("deployment", "set-concurrency-limit", "greet/hello", "--limit", "2",
       "--collision-strategy", "CANCEL_NEW", "--concurrency-key", "{name}")  # fmt: skip
    dep = json.loads(ok("deployment", "inspect", "greet/hello", "-o", "json"))
    assert (dep["concurrency_limit"], dep["collision_strategy"], dep["concurrency_key"]) == (
        2,
        "CANCEL_NEW",
        "{name}",
    )
    for limit in ("0", "-1"):
        bad("deployment", "set-concurrency-limit", "greet/hello", limit, message="at least 1")
    bad("deployment", "set-concurrency-limit", "greet/hello", "1", "--collision-strategy", "X",
        message="unknown collision strategy")  # fmt: skip
    assert (
        json.loads(ok("deployment", "inspect", "greet/hello", "-o", "json"))["concurrency_limit"]
        == 2
    )
    ok("deployment", "clear-concurrency-limit", "greet/hello")
    assert deployments()[0]["concurrency_limit"] is None
    ok("deployment", "pause", "greet/hello")
    assert deployments()[0]["paused"] is True
    ok("deployment", "resume", "greet/hello")
    bad("deployment", "run", "greet/hello", "--param", "bogus=1", message="unknown parameter")
    out = ok("deployment", "run", "greet/hello", "--param", "name=moon")
    run_id = out.split("(")[1].split(")")[0]
    run = json.loads(ok("flow-run", "inspect", run_id, "-o", "json"))
    assert run["parameters"] == {"name": "moon"}  # the run's value over the deployment's
    assert run["state"]["type"] == "SCHEDULED"
    bad("deployment", "inspect", "greet", message="<flow-name>/<deployment-name>")
    bad("deployment", "inspect", "greet/nope", message="no deployment named 'greet/nope'")
    ok("deployment", "delete", "greet/hello")
    assert deployments() == []


def test_run_and_wait_with_a_worker(flows: str, tmp_path: Path) -> None:
    ok("deploy", flows, "--name", "hello", "--pool", "pool")
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [*CLI, "worker", "start", "--pool", "pool"],
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        out = ok("deployment", "run", "greet/hello", "--param", "name=there", "--wait")
        assert "Completed" in out
        run_id = out.split("(")[1].split(")")[0]
        # The run's output, recorded by the worker from the run's pipe: it may
        # land a moment after the run's final state, which the run wrote itself.
        wait_until(
            lambda: "hello there!" in ok("flow-run", "logs", run_id), "the run's output recorded"
        )
        # A script can trust the exit code: non-zero (1) when the run FAILED.
        ok("deploy", flows.replace(":greet", ":boom"), "--name", "boom", "--pool", "pool")
        failed = headway("deployment", "run", "boom/boom", "--wait")
        assert failed.returncode == 1, (failed.stdout, failed.stderr)
        assert "is Failed: RuntimeError: this flow fails" in failed.stdout
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(30)
    assert worker.returncode == 0
    assert "stopped" in (tmp_path / "worker.log").read_text()


def test_flow_run_cancel(flows: str) -> None:
    ok("deploy", flows, "--name", "hello", "--pool", "pool", "--param", "name=x")
    out = ok("deployment", "run", "greet/hello", "--scheduled-time", "2099-01-01T00:00:00")
    run_id = out.split("(")[1].split(")")[0]
    assert "Cancelled flow run" in ok("flow-run", "cancel", run_id, "-m", "not needed")
    run = json.loads(ok("flow-run", "inspect", run_id, "-o", "json"))
    assert (run["state"]["type"], run["state"]["message"]) == ("CANCELLED", "not needed")
    bad("flow-run", "cancel", run_id, message="already ended CANCELLED")
    bad("flow-run", "cancel", "00000000-0000-0000-0000-000000000000", message="no flow run")
