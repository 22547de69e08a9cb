"""``headway why``, ``status``, ``events --follow``, ``concurrency explain``, ``flow-run watch``
and ``flow-run logs --follow``, run as a user runs them: real flow programs in their
own processes, embedded and through a server. The one-shot commands run in the
test's process (tests/helpers/cli.py); those that follow until Ctrl-C in one of
their own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import headway
from helpers.stuck_process import FAULTHANDLER, explain
from helpers.waiting import wait_until

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]

PROGRAM = """
import sys
from headway import flow
from headway.concurrency.sync import concurrency
from headway.context import get_flow_run_context


@flow
def holder():
    print("RUN", get_flow_run_context().flow_run_id, flush=True)
    with concurrency("db"):
        print("HELD", flush=True)
        sys.stdin.readline()


@flow
def waiter():
    print("RUN", get_flow_run_context().flow_run_id, flush=True)
    with concurrency("db"):
        pass


if __name__ == "__main__":
    {"holder": holder, "waiter": waiter}[sys.argv[1]]()
"""


@pytest.fixture(params=["embedded", "server"])
def where(
    request: pytest.FixtureRequest, headway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Embedded (the default), or a real server the CLI and programs reach over HTTP."""
    if request.param == "embedded":
        yield "embedded"
        return
    from headway.server.runner import ServerThread
    from headway.settings import get_settings

    server = ServerThread(get_settings()).start()
    monkeypatch.setenv("HEADWAY_API_URL", server.url)
    try:
        yield "server"
    finally:
        server.stop()


def own_client() -> Any:
    """A client of this test's store (embedded, or the server's), to close when done."""
    from headway.client.base import get_client
    from headway.settings import get_settings

    return get_client(get_settings())


def headway_json(*args: str) -> Any:
    result = headway(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class Program:
    """A flow of PROGRAM running in its own process."""

    def __init__(self, path: Path, which: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(path), which],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=dict(os.environ),
        )
        self.run_id = self.expect("RUN").split()[1]

    def expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"{prefix} never printed")

    def finish(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        assert self.proc.wait(60) == 0


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(PROGRAM)
    return path


def test_why_names_the_holder_of_a_limit_held_by_another_process(where: str, program: Path) -> None:
    assert headway("gcl", "create", "db", "--limit", "1").returncode == 0
    holder = Program(program, "holder")
    holder.expect("HELD")
    client = own_client()
    first = Program(program, "waiter")
    wait_until(lambda: bool(client.explain_run(first.run_id).blockers))
    second = Program(program, "waiter")
    wait_until(lambda: bool(client.explain_run(second.run_id).blockers))
    holder_name = client.read_flow_run(holder.run_id).name
    client.close()

    answer = headway_json("why", second.run_id)
    assert answer["kind"] == "flow_run" and answer["waiting"] is True
    (block,) = answer["blockers"]
    assert block["limit_name"] == "db" and block["position"] == 2 and block["waiting"] == 2
    assert [a["run_id"] for a in block["ahead"]] == [first.run_id]
    (held,) = block["holders"]
    assert held["run_id"] == holder.run_id and held["pid"] == holder.proc.pid
    assert held["name"] == holder_name

    text = headway("why", second.run_id)
    assert text.returncode == 0, text.stderr
    assert "Waiting for 'db'" in text.stdout and "position 2 of 2" in text.stdout
    assert f"pid {holder.proc.pid}" in text.stdout and holder.run_id in text.stdout

    status = headway_json("status")
    assert {w["run_id"] for w in status["waiting"]} == {first.run_id, second.run_id}
    assert status["limits"][0]["name"] == "db" and status["limits"][0]["waiters"] == 2

    holder.finish()
    first.finish()
    second.finish()
    done = headway_json("why", second.run_id)
    assert done["state"]["type"] == "COMPLETED" and not done["blockers"]
    assert [w["limit_name"] for w in done["waited"]] == ["db"]
    ls = headway_json("gcl", "ls")
    assert ls[0]["grants"] == 3 and ls[0]["denials"] == 2 and ls[0]["average_occupancy"] > 0


def test_why_and_explain_refuse_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    from headway.cli import main

    for args in (["why", str(uuid.uuid4())], ["why", " "], ["why", "x", "-o", "yaml"],
                 ["concurrency", "explain", "flow/none"], ["concurrency", "explain", "bad"],
                 ["events", "--since", "yesterday-ish"], ["events", "-n", "0"],
                 ["flow-run", "watch", "--interval", "0"]):  # fmt: skip
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.startswith("Error: ") and len(err.splitlines()) == 1
        assert "Traceback" not in err


def test_concurrency_explain(where: str) -> None:
    from headway.core.deployments import DeploymentSpec

    client = own_client()
    try:
        client.create_work_pool("pool", concurrency_limit=3)
        client.apply_deployment(
            DeploymentSpec(
                flow_name="etl", name="nightly", entrypoint="/nowhere/f.py:etl",
                work_pool="pool", concurrency_limit=1, collision_strategy="ENQUEUE",
            )
        )  # fmt: skip
    finally:
        client.close()
    answer = headway_json("concurrency", "explain", "etl/nightly")
    layers = {layer["layer"]: layer for layer in answer["layers"]}
    assert layers["work pool"]["limit"] == 3 and layers["deployment"]["limit"] == 1
    assert "waits as Scheduled/AwaitingConcurrencySlot" in answer["on_collision"]
    text = headway("concurrency", "explain", "etl/nightly")
    assert text.returncode == 0 and "When its schedule fires while a run is active" in text.stdout


def stream(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **FAULTHANDLER},
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], found: Callable[[str], bool]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if found(line):
            return lines
    raise AssertionError(f"never printed; got {lines}")


def interrupt(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        raise explain(proc, "30 s after SIGINT") from None


def test_events_follow_prints_new_events_until_ctrl_c(where: str) -> None:
    assert headway("gcl", "create", "before", "--limit", "1").returncode == 0
    follower = stream(["events", "--follow", "--interval", "0.1", "-o", "json", "--kind", "limit"])
    try:
        first = read_until(follower, lambda line: '"before"' in line)
        assert json.loads(first[-1])["kind"] == "limit.created"
        assert headway("gcl", "create", "after", "--limit", "2").returncode == 0
        later = read_until(follower, lambda line: '"after"' in line)
        assert json.loads(later[-1])["limit"] == "after"
    finally:
        code = interrupt(follower)
    assert code == 0


def test_flow_run_watch_until_ctrl_c(where: str, program: Path) -> None:
    assert headway("gcl", "create", "db", "--limit", "1").returncode == 0
    holder = Program(program, "holder")
    holder.expect("HELD")
    watcher = stream(["flow-run", "watch", "--interval", "0.2"])
    try:
        read_until(watcher, lambda line: holder.run_id in line and "RUNNING" in line)
    finally:
        code = interrupt(watcher)
        holder.finish()
    assert code == 0


def test_flow_run_logs_follow_ends_with_the_run(where: str) -> None:
    from datetime import UTC, datetime

    from headway.core.models import LogRecord
    from headway.core.states import Completed, Running

    client = own_client()
    run_id = str(uuid.uuid4())

    def log(message: str) -> None:
        client.write_logs([LogRecord(run_id, None, 20, "INFO", "test", message, datetime.now(UTC))])

    try:
        client.create_flow_run(id=run_id, name="chatty", flow_name="f", state=Running())
        log("first line")
        follower = stream(["flow-run", "logs", run_id, "--follow"])
        read_until(follower, lambda line: "first line" in line)
        log("second line")
        read_until(follower, lambda line: "second line" in line)
        log("last words")
        client.set_flow_run_state(run_id, Completed())
        assert follower.wait(30) == 0  # it ends by itself once the run has ended
        assert follower.stdout is not None
        assert "last words" in follower.stdout.read()
    finally:
        client.close()


def test_status_screen(capsys: pytest.CaptureFixture[str]) -> None:
    from headway.cli import main

    assert main(["status"]) == 0
    empty = capsys.readouterr().out
    assert "none yet" in empty and "nothing is limited" in empty
    assert main(["gcl", "create", "db", "--limit", "2"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    screen = capsys.readouterr().out
    assert "Busiest limits" in screen and "db" in screen and "0/2" in screen
    assert "Nothing is waiting" in screen and "No workers seen" in screen
