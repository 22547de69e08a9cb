"""The demo's stagecraft: stand-in work, and the cues that make what it shows certain.

The demo's flows stand in for real work with :func:`work`, which sleeps a
little. So that an overlap or a wait it shows is certain rather than likely,
the demo's driver can hold a piece of work back until it has seen in the store
what it wants to show (a holder, a waiter), and :func:`meet` makes runs wait
for each other. Both go through files in a scratch directory named by
``HEADWAY_DEMO_STAGE``, which every process of the demo inherits (served
deployments, workers and the runs they start). Without that variable (the
flows run by hand) :func:`work` only sleeps and :func:`meet` returns at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

STAGE_ENV = "HEADWAY_DEMO_STAGE"
#: The longest the demo waits for anything: a cue, a state in the store, a command.
PATIENCE = 60.0


def _stage() -> Path | None:
    where = os.environ.get(STAGE_ENV)
    return Path(where) if where else None


def _held(label: str) -> bool:
    stage = _stage()
    return stage is not None and (stage / f"{label}.hold").exists()


def work(label: str, seconds: float = 0.2) -> None:
    """Stand-in for real work: ``seconds`` of it, longer while the demo holds ``label`` back."""
    time.sleep(seconds)
    deadline = time.monotonic() + PATIENCE
    while _held(label) and time.monotonic() < deadline:
        time.sleep(0.01)


async def async_work(label: str, seconds: float = 0.2) -> None:
    """:func:`work` for asyncio code."""
    await asyncio.sleep(seconds)
    deadline = time.monotonic() + PATIENCE
    while _held(label) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def meet(group: str, count: int) -> None:
    """Under the demo, return once ``count`` callers (threads or processes) have arrived."""
    stage = _stage()
    if stage is None or count < 2:
        return
    room = stage / f"meet-{group}"
    room.mkdir(exist_ok=True)
    (room / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + PATIENCE
    while len(list(room.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def until(what: str, check: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Wait until ``check()`` is true (it reads the store); fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo waited {timeout:g} s for {what}; it never came")
        time.sleep(0.02)


def in_threads(*calls: Callable[[], object]) -> list[threading.Thread]:
    """Start each call in a thread of its own."""
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    return threads


def stop_with_parent() -> None:
    """SIGINT this process once its parent is gone (the demo was killed, even by SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def headway_command() -> list[str]:
    """The ``headway`` command of this Python (the script pip installed, if any)."""
    script = Path(sys.executable).with_name("headway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from headway.cli import run; run()"]


class Command:
    """``headway ARGS`` in a process of its own, as a user would type it; started at once."""

    def __init__(self, console: Console, args: Sequence[str]) -> None:
        self.console = console
        self.args = list(args)
        self.proc = subprocess.Popen(
            [*headway_command(), *args],
            env={**os.environ, "COLUMNS": "200"},  # no line cut at 80 columns
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, *, quiet: bool = False) -> str:
        """Wait for it; print the command and its output (unless ``quiet``); the output."""
        out, err = self.proc.communicate(timeout=PATIENCE)
        if self.proc.returncode != 0:
            raise RuntimeError(f"headway {' '.join(self.args)} failed:\n{err}")
        if not quiet:
            self.console.print(f"  [bold]$ headway {' '.join(self.args)}[/bold]", highlight=False)
            for line in out.rstrip().splitlines():
                self.console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
        return out


class Stage:
    """The driver's side: holds, and the processes the demo starts (logged to the stage)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.children: list[subprocess.Popen[bytes]] = []

    def hold(self, label: str) -> None:
        """Hold the work ``label`` back (when it comes) until :meth:`let_go`."""
        (self.path / f"{label}.hold").touch()

    def let_go(self, label: str) -> None:
        """Let the work ``label`` finish."""
        (self.path / f"{label}.hold").unlink(missing_ok=True)

    def spawn(self, args: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        """Start a process for the rest of the demo; its output goes to ``log``."""
        with open(self.path / log, "wb") as out:
            child = subprocess.Popen(
                list(args), env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT
            )
        self.children.append(child)
        return child

    def stop(self) -> None:
        """Stop the processes started (SIGINT: served deployments and workers stop cleanly)."""
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def logs(self) -> list[tuple[str, str]]:
        """The end of each process's log: what to show when the demo fails."""
        return [
            (log.name, log.read_text(errors="replace")[-3000:])
            for log in sorted(self.path.glob("*.log"))
        ]
