"""A flow run started by a script (``python myflow.py``, no worker) stops when it is cancelled.

The script runs as a real subprocess; ``headway flow-run cancel`` runs in this
process (the CLI's entry point), on the embedded store and through a server on
a loopback port. No worker signals the script: its own process notices the
cancel (the watch reads the run once a second while its code runs) and
interrupts the flow's code in the main thread, as Python allows. Each test
checks that the run ends CANCELLED with the cancel's reason, that the slots
its ``with concurrency()`` block held are free (``headway gcl inspect``), that
the flow's code after the point where it was interrupted never ran, and that
the script exits 1 (the flow call raises ``RunCancelled``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from headway.cli import main
from headway.client.base import get_client
from headway.core.states import StateType
from headway.server.runner import ServerProcess
from helpers.waiting import wait_until

PROGRAM = """
import asyncio, sys, time
from pathlib import Path
from headway import flow
from headway.concurrency.asyncio import concurrency as async_concurrency
from headway.concurrency.sync import concurrency
from headway.context import get_flow_run_context

MARKS = Path(sys.argv[2])

def mark(name):
    (MARKS / name).write_text("")

def say_run_id():
    print(get_flow_run_context().flow_run_id, flush=True)

def spin():
    print("HOLDING", flush=True)
    while True:  # Python between short C calls: interrupted at its next bytecode
        time.sleep(0.02)

@flow
def spins():
    say_run_id()
    try:
        with concurrency("db"):
            spin()
        mark("after-block")
    finally:
        mark("finally")
    mark("after")

@flow
def child():
    say_run_id()
    with concurrency("db"):
        spin()
    mark("child-after")

@flow
def parent():
    say_run_id()
    child()
    mark("parent-after")

@flow
async def spins_async():
    say_run_id()
    async with async_concurrency("db"):
        print("HOLDING", flush=True)
        while True:
            await asyncio.sleep(0.02)
    mark("after")

@flow
def blocked():
    say_run_id()
    with concurrency("db"):
        print("HOLDING", flush=True)
        sys.stdin.readline()  # in C until the test writes a line
        spin()
    mark("after")

if __name__ == "__main__":
    chosen = globals()[sys.argv[1]]
    if chosen is spins_async:
        asyncio.run(spins_async())
    else:
        chosen()
    mark("script-went-on")
"""


@pytest.fixture(params=["embedded", "server"])
def where(request: pytest.FixtureRequest, headway_home: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # fmt: skip
    """The store the script and the CLI share: embedded SQLite, or a server over it."""
    if request.param == "embedded":
        yield request.param
        return
    with ServerProcess(log_path=tmp_path / "server.log") as server:
        monkeypatch.setenv("HEADWAY_API_URL", server.url)
        yield request.param


class Script:
    """The program running one of its flows, with its marks folder and output."""

    def __init__(self, tmp_path: Path, flow: str) -> None:
        program = tmp_path / "program.py"
        program.write_text(PROGRAM)
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.stderr_path = tmp_path / "script.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(program), flow, str(self.marks)],
                env=dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, text=True,
            )  # fmt: skip
        self.run_ids: list[str] = []
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        for line in out:
            if line.strip() == "HOLDING":
                break
            self.run_ids.append(line.strip())
        else:
            self.proc.wait(60)
            raise AssertionError(f"the script ended first ({self.proc.returncode}): {self.err()}")

    def err(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def marked(self) -> set[str]:
        return {path.name for path in self.marks.iterdir()}

    def wait(self) -> int:
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the script went on after the cancel: {self.err()}") from None


@pytest.fixture
def script(tmp_path: Path) -> Iterator[list[Script]]:
    """Scripts a test starts (killed if still alive at its end)."""
    started: list[Script] = []
    yield started
    for one in started:
        if one.proc.poll() is None:
            one.proc.kill()
            one.proc.wait()


def _start(started: list[Script], tmp_path: Path, flow: str) -> Script:
    assert main(["gcl", "create", "db", "--limit", "1"]) == 0
    one = Script(tmp_path, flow)
    started.append(one)
    return one


def _cancel(capsys: pytest.CaptureFixture[str], run_id: str) -> None:
    capsys.readouterr()
    code = main(["flow-run", "cancel", run_id, "-m", "stop it"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "its process is stopping it" in out, out


def _slots_taken(capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["gcl", "inspect", "db"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    return first.split(":", 1)[1].split(",", 1)[0].strip()  # "1/1 slots taken"


def _ended_cancelled(one: Script, run_ids: list[str]) -> None:
    assert one.wait() == 1, one.err()
    assert "headway.exceptions.RunCancelled: stop it" in one.err(), one.err()
    client = get_client()
    for run_id in run_ids:
        state = client.read_flow_run(run_id).state
        assert state.type is StateType.CANCELLED, (run_id, state)


@pytest.mark.usefixtures("where")
def test_a_flows_own_code_is_interrupted_and_gives_its_slots_back(
    tmp_path: Path, script: list[Script], capsys: pytest.CaptureFixture[str]
) -> None:
    one = _start(script, tmp_path, "spins")
    assert _slots_taken(capsys) == "1/1 slots taken"
    _cancel(capsys, one.run_ids[0])
    _ended_cancelled(one, one.run_ids)
    assert get_client().read_flow_run(one.run_ids[0]).state.message == "stop it"
    assert _slots_taken(capsys) == "0/1 slots taken"
    # Its finally ran; nothing after the loop did, nor the script after the flow call.
    assert one.marked() == {"finally"}


@pytest.mark.usefixtures("where")
def test_cancelling_the_parent_interrupts_its_subflow_too(
    tmp_path: Path, script: list[Script], capsys: pytest.CaptureFixture[str]
) -> None:
    one = _start(script, tmp_path, "parent")
    parent_id, child_id = one.run_ids
    _cancel(capsys, parent_id)
    _ended_cancelled(one, [parent_id, child_id])
    assert _slots_taken(capsys) == "0/1 slots taken"
    assert one.marked() == set()
    # The subflow's task run in its parent ended with it.
    (mirror,) = get_client().read_flow_run(parent_id, with_task_runs=True).task_runs or ()
    assert mirror.state.type is StateType.CANCELLED, mirror.state


@pytest.mark.usefixtures("where")
def test_an_async_flow_is_cancelled_at_its_await(
    tmp_path: Path, script: list[Script], capsys: pytest.CaptureFixture[str]
) -> None:
    one = _start(script, tmp_path, "spins_async")
    _cancel(capsys, one.run_ids[0])
    _ended_cancelled(one, one.run_ids)
    assert _slots_taken(capsys) == "0/1 slots taken"
    assert one.marked() == set()


def test_code_blocked_in_c_keeps_its_slots_until_the_call_returns(
    tmp_path: Path, script: list[Script], capsys: pytest.CaptureFixture[str]
) -> None:
    one = _start(script, tmp_path, "blocked")
    _cancel(capsys, one.run_ids[0])
    # The process noticed the cancel while the flow's code waits in a read.
    wait_until(lambda: "Flow run is being cancelled" in one.err(), "the cancel noticed",
               alive=one.proc)  # fmt: skip
    assert _slots_taken(capsys) == "1/1 slots taken"  # the limit stays exact
    assert get_client().read_flow_run(one.run_ids[0]).state.type is StateType.CANCELLING
    assert one.proc.stdin is not None
    one.proc.stdin.write("go on\n")
    one.proc.stdin.flush()
    _ended_cancelled(one, one.run_ids)
    assert _slots_taken(capsys) == "0/1 slots taken"
    assert one.marked() == set()
