"""Child processes of a test: started with a log file, always stopped afterwards.

Workers, servers and scripts run as real subprocesses. A test (or its fixture)
starts them through :class:`Processes`, which keeps each one's output in a log
under the test's folder and, when the test ends, asks every process still
alive to stop (SIGTERM) and kills the ones that do not within the grace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

#: The ``headway`` command, run by this interpreter (no reliance on PATH).
CLI = [sys.executable, "-c", "from headway.cli import run; run()"]


class Processes:
    """The processes one test started; a context manager that stops them on exit."""

    def __init__(self, log_dir: Path, *, grace: float = 15.0) -> None:
        self.log_dir = log_dir
        self.grace = grace
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(
        self,
        command: Sequence[str],
        *,
        name: str = "process",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` with its output in ``<log_dir>/<name>-<n>.log``.

        ``env`` defaults to this process's environment as it is now (a test's
        monkeypatched variables included).
        """
        log_path = self.log_dir / f"{name}-{len(self.started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                list(command),
                env=dict(os.environ if env is None else env),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(proc)
        self.logs[proc.pid] = log_path
        return proc

    def worker(
        self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``headway worker start ARGS``."""
        return self.start([*CLI, "worker", "start", *args], name="worker", env=env, cwd=cwd)

    def log_of(self, proc: subprocess.Popen[bytes]) -> Path:
        """The log file of a process started here."""
        return self.logs[proc.pid]

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What a process started here has printed so far."""
        return self.log_of(proc).read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM every process still alive, then wait; kill those past the grace."""
        stop_all(self.started, grace=self.grace)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def stop_all(procs: Sequence[subprocess.Popen[bytes]], *, grace: float = 15.0) -> None:
    """Ask each live process to stop (all at once), then reap; kill any past ``grace``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
