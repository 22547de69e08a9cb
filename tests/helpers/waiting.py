"""Waiting on a condition instead of sleeping for a guessed time.

A test that needs something to have happened (a waiter queued, a file written,
a run ended) polls for it: it goes on the moment the condition holds, however
slow or fast the machine, and fails with a message naming what never came.
The timeout bounds only a failing test; it is not a statement about speed.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Polling starts at this pause and doubles up to :data:`MAX_PAUSE`: a condition
#: met at once costs little wait, and a long wait costs little CPU on a loaded machine.
FIRST_PAUSE = 0.002
MAX_PAUSE = 0.05
#: The default bound on a wait: long, since it only limits how long a failing test hangs.
TIMEOUT = 60.0


def wait_until(
    check: Callable[[], object],
    what: str = "the condition",
    *,
    timeout: float = TIMEOUT,
    alive: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> None:
    """Return once ``check()`` is true; fail the test after ``timeout`` seconds.

    ``alive``: a process the condition depends on; if it exits first, fail at once
    (with the tail of its ``log`` file, when given) rather than waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    # An Event's wait, not time.sleep: the same pause, and no sleep to count.
    idle = threading.Event()
    while not check():
        if alive is not None and alive.poll() is not None:
            raise AssertionError(
                f"{what}: the process exited ({alive.returncode}) first{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s{_tail(log)}")
        idle.wait(pause)
        pause = min(pause * 2, MAX_PAUSE)


def wait_for_file(path: Path, *, nonempty: bool = False, timeout: float = TIMEOUT) -> str:
    """Wait until ``path`` exists (with ``nonempty``, until it has content); its text."""

    def ready() -> bool:
        try:
            return not nonempty or path.stat().st_size > 0
        except FileNotFoundError:
            return False

    wait_until(ready, f"{path.name} written", timeout=timeout)
    return path.read_text()


def wait_for_runs(
    client: Any,
    run_ids: Sequence[str],
    done: Callable[[Any], bool] | None = None,
    *,
    timeout: float = TIMEOUT,
) -> list[Any]:
    """Wait until every run satisfies ``done`` (default: its state is final); the runs."""
    test = done if done is not None else (lambda run: run.state.is_final)
    last: list[Any] = []

    def check() -> bool:
        last[:] = [client.read_flow_run(r) for r in run_ids]
        return all(test(run) for run in last)

    try:
        wait_until(check, "runs done", timeout=timeout)
    except AssertionError as exc:
        states = [(run.id, run.state.type.value, run.state.message) for run in last]
        raise AssertionError(f"{exc}: {states}") from None
    return last


def _tail(log: Path | None, chars: int = 4000) -> str:
    if log is None:
        return ""
    try:
        return "\n" + log.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"\n(no log: {exc})"
