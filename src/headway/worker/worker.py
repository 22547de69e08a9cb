"""The worker: claim due runs, run each in a subprocess, renew leases, honour cancellation.

Three kinds of thread, each with one job:

- the **claim loop** asks for as many runs as the worker has room for, waiting
  on the store's wake-ups (a freed slot, a new due run, the next scheduled
  time) rather than polling, and starts a process for each run it gets;
- the **monitor** heartbeats (renewing the leases of its runs, learning which
  to cancel), runs the idempotent scheduler, and escalates a cancellation from
  SIGTERM to SIGKILL after the grace period;
- one **watcher** per run process streams its output (echoed, and recorded as
  the run's logs), waits for it to exit, and, if it ended without a final
  state, records CRASHED (or CANCELLED when it was being cancelled).

Stopping: the first SIGTERM or Ctrl-C stops claiming and lets the runs going
finish (for ``drain_seconds``, default: until they end); a second signal, or
the end of the drain, cancels them: each run is marked CANCELLING with the
reason, its process gets SIGTERM (the flow engine records it CANCELLED with
its task runs and logs), and SIGKILL after ``cancel_grace_seconds``. A third
signal sends SIGKILL at once.

A run whose worker dies is ended CRASHED by whoever next sweeps (any claim or
heartbeat) once its lease expires, and its slots come back. Its process dies
with the worker: every run process holds the read end of the worker's
*lifeline* pipe, whose write end only the worker holds; when the worker's
process is gone, however it went, the read returns and the run's process group
is killed. (Not ``PR_SET_PDEATHSIG``: Linux fires that when the *thread* that
started the child exits, and the claim loop's thread ends at every stop.)

Starting run processes, reading their output and settling their end live in
:mod:`headway.worker.processes` (the ``RunProcesses`` half of ``Worker``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from headway._backoff import Backoff
from headway.client.base import Client, get_client
from headway.core.limits import WakeTarget
from headway.core.states import Scheduled
from headway.exceptions import HeadwayError, ValidationError
from headway.worker.processes import RunProcesses, _Child, _discard, _signal_group

logger = logging.getLogger("headway.worker")

#: Runs claimed per request when the worker has no limit of its own.
_BATCH = 16
_SCHEDULE_EVERY_SECONDS = 5.0
#: A run its worker no longer holds has this long to exit on its own before SIGTERM.
_LOST_GRACE_SECONDS = 2.0
#: Pauses after a failed claim (the server or store away), reset by a good one.
CLAIM_BACKOFF = Backoff(first=0.4, cap=5.0)


class Worker(RunProcesses):
    """Claims runs from a pool (or, for ``serve()``, of named deployments) and runs them.

    ``limit`` caps the runs this worker runs at once (None: no cap of its own;
    pool, queue and deployment limits apply in any case). ``cancel_grace_seconds``
    is how long a cancelled run's process has after SIGTERM before SIGKILL.
    ``drain_seconds`` is how long :meth:`drain` (the first SIGTERM or Ctrl-C of
    :meth:`run`) lets the runs going finish before cancelling them (None: until
    they end).
    ``working_dir`` is where run processes start, and so what a deployment's
    relative entrypoint is resolved against (default: this process's directory).
    """

    def __init__(
        self,
        *,
        pool: str | None = None,
        queues: Sequence[str] = (),
        deployments: Sequence[str] = (),
        limit: int | None = None,
        name: str | None = None,
        client: Client | None = None,
        cancel_grace_seconds: float = 10.0,
        drain_seconds: float | None = None,
        run_scheduler: bool = True,
        claim_wait_seconds: float | None = None,
        echo: TextIO | None = None,
        python: str | None = None,
        standby: bool = True,
        working_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if pool is None and not deployments:
            raise ValidationError("a worker needs a work pool (or deployments to serve)")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValidationError(f"worker limit must be at least 1, got {limit!r}")
        self.pool = pool
        self.queues = list(queues)
        self.deployments = list(deployments)
        self.limit = limit
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.client = client or get_client()
        self.cancel_grace_seconds = cancel_grace_seconds
        self.drain_seconds = drain_seconds
        self.run_scheduler = run_scheduler
        if claim_wait_seconds is None:
            # A claim held in this process is cut short on stop; one held by a
            # server is not, so it is kept short enough for a prompt stop.
            local = getattr(self.client, "orchestrator", None) is not None
            claim_wait_seconds = 5.0 if local else 2.0
        self.claim_wait_seconds = claim_wait_seconds
        self.echo = echo
        self.python = python or sys.executable
        #: Where run processes start: relative entrypoints are resolved against it
        #: (None: this process's own working directory).
        self.working_dir = None if working_dir is None else os.path.abspath(working_dir)
        #: Keep one run process started and imported ahead of the next run.
        self.standby = standby
        self._standby: tuple[subprocess.Popen[bytes], int] | None = None
        self.id: str | None = None
        self._children: dict[str, _Child] = {}
        self._cond = threading.Condition()
        #: No more claims (draining or stopping).
        self._claims_stopped = threading.Event()
        #: Cancel the runs going (a second signal during a drain).
        self._cancel_now = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        #: The lifeline pipe (read end, write end): see the module's docstring.
        self._lifeline: tuple[int, int] | None = None
        self._threads: list[threading.Thread] = []
        self._echo_lock = threading.Lock()
        self._beat_now = threading.Event()
        lease = self.client.settings.concurrency_lease_seconds
        self.heartbeat_seconds = max(0.05, min(lease / 3.0, 2.0))

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> Worker:
        """Register and start claiming in background threads; returns at once."""
        record = self.client.register_worker(
            self.pool or "", self.name, pid=os.getpid(), host=socket.gethostname()
        )
        self.id = record.id
        if self._lifeline is None:
            self._lifeline = os.pipe()
        for target, label in ((self._claim_loop, "claim"), (self._monitor_loop, "monitor")):
            thread = threading.Thread(target=target, name=f"headway-worker-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("worker %s started (pool=%s)", self.name, self.pool or "-")
        return self

    def run(self) -> None:
        """Start, then block until stopped by signals (SIGINT or SIGTERM).

        The first signal drains (no new runs; those going may finish, for
        ``drain_seconds`` at most), the second cancels the runs going (SIGTERM,
        then SIGKILL after ``cancel_grace_seconds``), a third kills them at once.
        """
        signals = 0
        started = False

        def on_signal(signum: int, frame: Any) -> None:
            nonlocal signals
            signals += 1
            going = len(self._children)
            if not started:
                # Still registering: give up on an unreachable store at once; the
                # drain starts (with nothing to drain) once the worker is up.
                self._claims_stopped.set()
                self.client.stop_retrying()
            elif signals == 1:
                # Before the message: a run created once it is printed is never
                # started here (a claim already waiting hands it back), even
                # while the drain's thread has not yet begun.
                self._claims_stopped.set()
                within = (
                    "" if self.drain_seconds is None else f" (at most {self.drain_seconds:g} s)"
                )
                self._say(
                    f"stopping: no new runs; waiting for {going} run(s) to finish{within};"
                    " signal again to cancel them"
                )
                threading.Thread(target=self.drain, daemon=True).start()
            elif signals == 2:
                self._say(f"stopping: cancelling {going} run(s); signal again to kill them")
                self._cancel_now.set()
                with self._cond:
                    self._cond.notify_all()
            else:
                self.cancel_grace_seconds = 0.0
                self._beat_now.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self.start()
            except HeadwayError:
                if signals:
                    return  # told to stop while it could not even register
                raise
            started = True
            if signals:
                threading.Thread(target=self.drain, daemon=True).start()
            while not self._stopped.wait(0.5):
                pass
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def drain(self, seconds: float | None = None) -> None:
        """Stop claiming, let the runs going finish, then :meth:`stop`.

        Waits at most ``seconds`` (default ``drain_seconds``; None: until the
        runs end), or until :meth:`cancel_runs`; what still runs then is cancelled.
        """
        self._claims_stopped.set()
        self._poke_claim()
        limit = self.drain_seconds if seconds is None else seconds
        deadline = None if limit is None else time.monotonic() + limit
        why = "its worker was stopped"
        with self._cond:
            self._cond.notify_all()
            while self._children and not self._cancel_now.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    why = f"its worker stopped and the {limit:g} s drain ended"
                    break
                self._cond.wait(remaining)
        self.stop(reason=why)

    def cancel_runs(self) -> None:
        """End a :meth:`drain` now: the runs still going are cancelled."""
        self._cancel_now.set()
        with self._cond:
            self._cond.notify_all()

    def stop(self, *, timeout: float | None = None, reason: str = "its worker stopped") -> None:
        """Stop claiming, cancel the runs still going (SIGTERM, then SIGKILL), unregister.

        Each run still going is first marked CANCELLING with ``reason``; its
        process then records CANCELLED itself, or the worker does when it had
        to be killed.
        """
        self._claims_stopped.set()
        self._stopping.set()
        # A server that is down must not hold the stop up for its retry windows
        # (claims, heartbeats and the goodbye each retry for seconds otherwise).
        self.client.stop_retrying()
        self._poke_claim()
        with self._cond:
            cancelled = [c for c in self._children.values() if c.stopping is None]
            for child in cancelled:
                child.stopping = "stop"
            self._cond.notify_all()
        for child in cancelled:
            with contextlib.suppress(HeadwayError):
                self.client.cancel_flow_run(child.run.id, reason)
        self._beat_now.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        standby, self._standby = self._standby, None
        if standby is not None:
            _discard(*standby)
        if self.id is not None:
            with contextlib.suppress(HeadwayError):
                self.client.remove_worker(self.id)
        self._close_lifeline()
        self._stopped.set()

    def _close_lifeline(self) -> None:
        # Only once no run process is left: closing the write end ends them all.
        with self._cond:
            if self._children or self._lifeline is None:
                return
            lifeline, self._lifeline = self._lifeline, None
        for fd in lifeline:
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def running(self) -> list[str]:
        """Ids of the runs this worker runs now."""
        with self._cond:
            return list(self._children)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped."""
        return self._stopped.wait(timeout)

    # -- claiming ------------------------------------------------------------------
    def _room(self) -> int:
        if self.limit is None:
            return _BATCH
        return self.limit - len(self._children)

    def _claim_loop(self) -> None:
        assert self.id is not None
        # A stop interrupts the pause; the loop then sees it.
        retry = CLAIM_BACKOFF.start(sleep=self._stopping.wait)
        self._ready_standby()
        while not self._claims_stopped.is_set():
            with self._cond:
                while self._room() < 1 and not self._claims_stopped.is_set():
                    self._cond.wait(1.0)
                room = self._room()
            if self._claims_stopped.is_set():
                break
            try:
                claimed = self.client.claim_flow_runs(
                    self.id,
                    pool=self.pool,
                    queues=self.queues or None,
                    deployments=self.deployments or None,
                    limit=room,
                    wait=self.claim_wait_seconds,
                )
                retry.reset()
            except Exception as exc:  # a worker outlives any one failed claim
                logger.warning("claim failed: %s", exc)
                self._say(f"claim failed: {exc}")
                retry.pause()
                continue
            for item in claimed:
                if self._claims_stopped.is_set():
                    # Claimed while stopping: hand it back to wait for another worker.
                    self._end(item.run, Scheduled(message="handed back: its worker stopped"))
                else:
                    self._spawn(item)
            self._ready_standby()

    def _poke_claim(self) -> None:
        # A claim waiting in this process (embedded store) returns at once.
        orchestrator = getattr(self.client, "orchestrator", None)
        if orchestrator is not None and self.id is not None:
            orchestrator.wakeups.notify([WakeTarget(f"claim:{self.id}", None, "", 0)])

    # -- monitoring ----------------------------------------------------------------
    def _monitor_loop(self) -> None:
        assert self.id is not None
        listener = None
        orchestrator = getattr(self.client, "orchestrator", None)
        if orchestrator is not None:
            listener = orchestrator.wakeups.listen(f"worker:{self.id}")
        next_beat = 0.0
        next_schedule = 0.0
        try:
            while True:
                now = time.monotonic()
                with self._cond:
                    children = list(self._children.values())
                if self._stopping.is_set() and not children and not self._claiming():
                    break
                if now >= next_beat or self._beat_now.is_set():
                    self._beat_now.clear()
                    self._heartbeat(children)
                    next_beat = now + self.heartbeat_seconds
                if (
                    self.run_scheduler
                    and now >= next_schedule
                    and not self._claims_stopped.is_set()
                ):
                    self._schedule()
                    next_schedule = now + _SCHEDULE_EVERY_SECONDS
                self._escalate(children)
                pause = max(0.01, min(next_beat - time.monotonic(), 0.25))
                if listener is not None:
                    if listener.wait(pause):
                        self._beat_now.set()
                else:
                    self._beat_now.wait(pause)
        finally:
            if listener is not None:
                listener.close()

    def _claiming(self) -> bool:
        return any(t.name.endswith("claim") and t.is_alive() for t in self._threads)

    def _heartbeat(self, children: list[_Child]) -> None:
        assert self.id is not None
        try:
            beat = self.client.heartbeat_worker(self.id, [c.run.id for c in children])
        except Exception as exc:  # keep monitoring; the next beat may succeed
            logger.warning("heartbeat failed: %s", exc)
            return
        by_id = {c.run.id: c for c in children}
        for run_id in beat.cancelling:
            child = by_id.get(run_id)
            if child is not None and child.stopping is None:
                child.stopping = "cancel"
                self._say(f"cancelling flow run {child.run.name!r} ({run_id})")
        for run_id in beat.lost:
            child = by_id.get(run_id)
            if child is not None and child.proc.poll() is None and child.stopping is None:
                # The run ended: normally its process is exiting now. If it is still
                # there after a moment, the store gave its slots away (lease expired):
                # it must not go on.
                child.stopping = "lost"
                child.stop_after = time.monotonic() + _LOST_GRACE_SECONDS

    def _escalate(self, children: list[_Child]) -> None:
        now = time.monotonic()
        for child in children:
            if child.stopping is None or child.proc.poll() is not None:
                continue
            if child.term_sent is None:
                if now < child.stop_after:
                    continue
                child.term_sent = now
                if child.stopping == "lost":
                    self._say(f"lost flow run {child.run.name!r} ({child.run.id}): stopping it")
                _signal_group(child.proc, signal.SIGTERM)
            elif not child.killed and now - child.term_sent >= self.cancel_grace_seconds:
                child.killed = True
                _signal_group(child.proc, signal.SIGKILL)

    def _schedule(self) -> None:
        try:
            self.client.schedule_runs()
            self.client.mark_late_runs()
        except Exception as exc:
            logger.warning("scheduler pass failed: %s", exc)


__all__ = ["Worker"]
