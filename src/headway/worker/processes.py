"""Run processes: starting one per run (or a standby one ahead), its output, its end.

The worker's half that deals with the subprocesses (see :mod:`headway.worker.worker`
for the whole): a run process is started from the claim loop (or taken ready
from the standby), its stdout and stderr are echoed and recorded as the run's
logs by one reader thread each, and one watcher thread per process waits for
it to exit and records CRASHED (or CANCELLED when it was being stopped) if it
ended without a final state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, TextIO

from headway.core.models import ClaimedRun, FlowRun, LogRecord
from headway.core.states import Cancelled, Crashed, State, StateType
from headway.exceptions import HeadwayError
from headway.worker.env import (
    ENV_ECHO_FD,
    ENV_ENTRYPOINT,
    ENV_LIFELINE_FD,
    ENV_RUN_ID,
    ENV_WORKER_PID,
)

if TYPE_CHECKING:
    from headway.client.base import Client

logger = logging.getLogger("headway.worker")

_NOT_FINAL = frozenset(
    {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING,
     StateType.PAUSED}
)  # fmt: skip
#: Log lines recorded per write, and the longest a line waits to be written.
_LOG_BATCH = 200
_LOG_FLUSH_SECONDS = 0.5


@dataclass
class _Child:
    run: FlowRun
    proc: subprocess.Popen[bytes]
    started: float
    #: Why the worker is stopping it: "cancel", "stop" or "lost" (None: it is not).
    stopping: str | None = None
    term_sent: float | None = None
    #: Not signalled before this (monotonic) time.
    stop_after: float = 0.0
    killed: bool = False
    readers: list[threading.Thread] = field(default_factory=list)


class RunProcesses:
    """The run-process half of :class:`~headway.worker.worker.Worker` (a mixin)."""

    client: Client
    echo: TextIO | None
    python: str
    standby: bool
    working_dir: str | None
    _standby: tuple[subprocess.Popen[bytes], int] | None
    _children: dict[str, _Child]
    _cond: threading.Condition
    _claims_stopped: threading.Event
    _stopping: threading.Event
    _lifeline: tuple[int, int] | None
    _echo_lock: threading.Lock
    _beat_now: threading.Event

    # -- run processes -------------------------------------------------------------
    def _start_process(self, item: ClaimedRun | None) -> tuple[subprocess.Popen[bytes], int]:
        """A run process (for ``item``, or a standby one when None) and its echo descriptor."""
        echo_read, echo_write = os.pipe()
        env = dict(os.environ)
        env.update(
            {
                ENV_WORKER_PID: str(os.getpid()),
                ENV_ECHO_FD: str(echo_write),
                "PYTHONUNBUFFERED": "1",
            }
        )
        lifeline = self._lifeline
        passed = (echo_write,) if lifeline is None else (echo_write, lifeline[0])
        if lifeline is not None:
            env[ENV_LIFELINE_FD] = str(lifeline[0])
        env.pop(ENV_RUN_ID, None)
        env.pop(ENV_ENTRYPOINT, None)
        if item is not None:
            env[ENV_RUN_ID] = item.run.id
            if item.entrypoint:
                env[ENV_ENTRYPOINT] = item.entrypoint
        args = [item.run.id] if item is not None else ["--standby"]
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "headway.worker.execute", *args],
                env=env,
                stdin=subprocess.DEVNULL if item is not None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=passed,
                start_new_session=True,
                cwd=self.working_dir,
            )
        except OSError:
            os.close(echo_read)
            raise
        finally:
            os.close(echo_write)
        return proc, echo_read

    def _take_standby(self, item: ClaimedRun) -> tuple[subprocess.Popen[bytes], int] | None:
        """Hand ``item`` to the ready process, if there is a live one."""
        standby, self._standby = self._standby, None
        if standby is None:
            return None
        proc, echo_read = standby
        order = json.dumps({"run_id": item.run.id, "entrypoint": item.entrypoint})
        try:
            if proc.poll() is not None or proc.stdin is None:
                raise OSError("the standby process is gone")
            proc.stdin.write(order.encode() + b"\n")
            proc.stdin.close()
        except OSError:
            _discard(proc, echo_read)
            return None
        return proc, echo_read

    def _ready_standby(self) -> None:
        """Keep one run process started and imported, ready for the next run."""
        if not self.standby or self._claims_stopped.is_set() or self._standby is not None:
            return
        try:
            self._standby = self._start_process(None)
        except OSError as exc:
            logger.warning("could not start a standby run process: %s", exc)

    def _spawn(self, item: ClaimedRun) -> None:
        run = item.run
        try:
            started = self._take_standby(item) or self._start_process(item)
        except OSError as exc:
            self._end(run, Crashed(message=f"the worker could not start the run's process: {exc}"))
            return
        proc, echo_read = started
        child = _Child(run, proc, time.monotonic())
        if self._stopping.is_set():
            child.stopping = "stop"  # claimed while stopping: cancelled like the others
        assert proc.stdout is not None and proc.stderr is not None
        sources: list[tuple[IO[bytes], str | None, int]] = [
            (proc.stdout, "headway.worker.stdout", logging.INFO),
            (proc.stderr, "headway.worker.stderr", logging.WARNING),
            (os.fdopen(echo_read, "rb"), None, logging.INFO),
        ]
        for stream, log_name, level in sources:
            reader = threading.Thread(
                target=self._pump, args=(child, stream, log_name, level), daemon=True
            )
            reader.start()
            child.readers.append(reader)
        with self._cond:
            self._children[run.id] = child
        self._say(f"started flow run {run.name!r} ({run.id}) of {run.deployment} pid={proc.pid}")
        watcher = threading.Thread(target=self._watch, args=(child,), daemon=True)
        watcher.start()

    def _pump(self, child: _Child, stream: IO[bytes], log_name: str | None, level: int) -> None:
        batch: list[LogRecord] = []
        last = time.monotonic()
        prefix = f"{child.run.name} | "
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._say(prefix + line)
                if log_name is None or not line.strip():
                    continue
                batch.append(
                    LogRecord(
                        flow_run_id=child.run.id,
                        task_run_id=None,
                        level=level,
                        level_name=logging.getLevelName(level),
                        logger=log_name,
                        message=line,
                        timestamp=datetime.now(UTC),
                    )
                )
                if len(batch) >= _LOG_BATCH or time.monotonic() - last > _LOG_FLUSH_SECONDS:
                    self._write_logs(batch)
                    batch, last = [], time.monotonic()
        except (OSError, ValueError):
            pass
        finally:
            self._write_logs(batch)
            with contextlib.suppress(OSError):
                stream.close()

    def _write_logs(self, batch: list[LogRecord]) -> None:
        if batch:
            try:
                self.client.write_logs(batch)
            except HeadwayError as exc:
                logger.warning("could not record %d log line(s): %s", len(batch), exc)

    def _watch(self, child: _Child) -> None:
        code = child.proc.wait()
        for reader in child.readers:
            # A grandchild may hold the pipes open: do not wait for it forever.
            reader.join(2.0)
        run = child.run
        outcome = "ended"
        try:
            outcome = self._settle(child, code) or outcome
        except Exception as exc:  # the watcher must always free the worker's place
            logger.warning("flow run %s: could not check its final state: %s", run.id, exc)
        finally:
            with self._cond:
                self._children.pop(run.id, None)
                self._cond.notify_all()
            self._beat_now.set()
        self._say(f"flow run {run.name!r} {outcome} (exit code {code})")

    def _settle(self, child: _Child, code: int) -> str | None:
        """Record CRASHED or CANCELLED for a run whose process ended without a final state."""
        run = child.run
        try:
            current = self.client.read_flow_run(run.id)
        except HeadwayError:
            return None
        if current.state.is_final or child.stopping == "lost":
            return current.state.name if current.state.is_final else None
        how = _exit_text(code)
        if child.stopping in ("cancel", "stop") or current.state.type is StateType.CANCELLING:
            why = "cancelled" if child.stopping != "stop" else "its worker stopped"
            state: State = Cancelled(message=f"{why}; the run's process {how}")
        else:
            state = Crashed(message=f"the run's process {how} before the run ended")
        self._end(run, state)
        return state.name

    def _end(self, run: FlowRun, state: State) -> None:
        try:
            self.client.set_flow_run_state(run.id, state, expect=_NOT_FINAL)
        except HeadwayError as exc:
            logger.info("flow run %s: not marked %s: %s", run.id, state.name, exc)

    # -- output ----------------------------------------------------------------------
    def _say(self, line: str) -> None:
        if self.echo is None:
            return
        with self._echo_lock:
            with contextlib.suppress(Exception):
                self.echo.write(_CONTROL.sub("", line) + "\n")
                self.echo.flush()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def _discard(proc: subprocess.Popen[bytes], echo_read: int) -> None:
    """Stop a standby process that will not be used (EOF on its stdin ends it)."""
    with contextlib.suppress(OSError):
        os.close(echo_read)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(2.0)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
