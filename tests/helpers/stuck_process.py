"""Why a child process did not exit when told to: its signal state and its threads' stacks.

A test that signals a child and waits for it to exit calls :func:`explain` when
the wait times out (seen once in a parallel CI run, not reproduced since). The
child must run with ``PYTHONFAULTHANDLER=1`` (:data:`FAULTHANDLER`) for its
stacks to be shown: SIGABRT then makes it print them before it dies.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

#: Environment for a child whose stacks :func:`explain` should show.
FAULTHANDLER = {"PYTHONFAULTHANDLER": "1"}


def signal_state(pid: int) -> str:
    """A process's run state, pending signals and signal masks, from /proc."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as exc:
        return str(exc)
    keys = ("State", "Threads", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    return "; ".join(line.replace("\t", " ") for line in lines if line.split(":")[0] in keys)


def explain(proc: subprocess.Popen[str], what: str) -> AssertionError:
    """End a child that outlived ``what``; an error telling its state and stacks."""
    state = signal_state(proc.pid)
    proc.send_signal(signal.SIGABRT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return AssertionError(f"still running {what} ({state}):\n{(err or '')[-6000:]}")
