"""A process that is interrupted, terminated or exits leaves truthful records behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from headway.client.base import get_client
from headway.core.states import StateType
from helpers.stuck_process import FAULTHANDLER, explain

S = StateType

BLOCKING_FLOW = """
import sys, threading
from headway import flow, task
from headway.context import get_flow_run_context

@task
def quick():
    return 1

@task
def blocked():
    threading.Event().wait(60)

@flow
def long_flow():
    print(get_flow_run_context().flow_run_id, flush=True)
    quick()
    future = blocked.submit()
    print("READY", flush=True)
    future.result()

if __name__ == "__main__":
    long_flow()
"""


def _start(tmp_path: Path, program: str) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "program.py"
    script.write_text(program)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, **FAULTHANDLER},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    ready = proc.stdout.readline().strip()
    assert ready == "READY", (run_id, ready, proc.stderr.read() if proc.stderr else "")
    return proc, run_id


@pytest.mark.parametrize(
    ("sig", "message", "exit_codes"),
    [
        (signal.SIGINT, "interrupted (KeyboardInterrupt)", {-signal.SIGINT, 1, 130}),
        (signal.SIGTERM, "terminated (SIGTERM)", {128 + signal.SIGTERM}),
    ],
)
def test_a_signal_ends_the_flow_and_its_unfinished_tasks_cancelled(
    tmp_path: Path, sig: signal.Signals, message: str, exit_codes: set[int]
) -> None:
    proc, run_id = _start(tmp_path, BLOCKING_FLOW)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise explain(proc, f"30 s after {sig.name}") from None
    assert proc.returncode in exit_codes, proc.stderr.read() if proc.stderr else ""
    run = get_client().read_flow_run(run_id, with_task_runs=True)
    assert run.state.type is S.CANCELLED
    assert message in (run.state.message or "")
    assert run.end_time is not None
    assert {t.name: t.state.type for t in run.task_runs or ()} == {
        "quick-0": S.COMPLETED,
        "blocked-0": S.CANCELLED,
    }


DAEMON_FLOW = """
import threading
from headway import flow, task
from headway.context import get_flow_run_context

started = threading.Event()

@task
def blocked():
    started.set()
    threading.Event().wait(60)

@flow
def long_flow():
    print(get_flow_run_context().flow_run_id, flush=True)
    blocked.submit().result()

threading.Thread(target=long_flow, daemon=True).start()
assert started.wait(30)
# The main thread ends here: the interpreter exits while the flow still runs.
"""


def test_exiting_while_a_flow_runs_in_a_daemon_thread_records_it_crashed(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(DAEMON_FLOW)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run = get_client().read_flow_run(done.stdout.strip(), with_task_runs=True)
    assert run.state.type is S.CRASHED, run.state
    assert "process exited while the flow run was running" in (run.state.message or "")
    assert [(t.name, t.state.type) for t in run.task_runs or ()] == [("blocked-0", S.CRASHED)]


def test_tasks_submitted_outside_flows_finish_before_a_clean_exit(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(
        "import threading\n"
        "from headway import task\n"
        "gate = threading.Event()\n"
        "@task\n"
        "def later(i):\n"
        "    gate.wait(5)\n"
        "    return i\n"
        "futures = [later.submit(i) for i in range(3)]\n"
        "print(*[f.task_run_id for f in futures], flush=True)\n"
        "gate.set()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    client = get_client()
    for task_run_id in done.stdout.split():
        run = client.read_task_run(task_run_id)
        assert run.flow_run_id is None and run.state.type is S.COMPLETED


FORKING = """
import os, sys, threading
from headway import flow, task

gate = threading.Event()

@task
def blocked_outside():
    gate.wait(30)
    return "outside"

@task
def one():
    return 1

@flow
def forking():
    one.submit().result()
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a normal exit: the child runs its atexit hooks
    _, status = os.waitpid(pid, 0)
    return status

pending = blocked_outside.submit()  # unfinished when the child is forked
print(forking())
gate.set()
print(pending.result())
"""


def test_a_forked_child_exiting_leaves_the_parents_runs_alone(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(FORKING)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "outside"]
    (run,) = get_client().list_flow_runs(flow_name="forking")
    assert [s.type for s in get_client().read_states(run.id)] == [
        S.PENDING,
        S.RUNNING,
        S.COMPLETED,
    ]
