"""The recorder: task-run states and log lines, written to the store in batches.

Recording one task run per transaction would cost more than running a no-op
task, so the task engine only appends to in-memory queues and one background
thread per process writes what accumulated every ``FLUSH_INTERVAL`` seconds (or
sooner when ``FLUSH_SIZE`` items wait). Nothing is lost: a flow run flushes
synchronously before it records its own final state, so when a flow returns
every task run and log line of it is in the store; an ``atexit`` hook flushes
whatever is left when the process exits cleanly.

Queues are ``collections.deque`` objects: ``append`` and ``popleft`` are atomic,
so producers never take a lock, and nothing appended while a flush drains the
queue can be lost (it is either drained now or by the next flush).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING

from headway._engine import lifecycle
from headway.exceptions import StoreError

if TYPE_CHECKING:
    from headway._engine.tracking import TaskRunTracker
    from headway.client.base import Client
    from headway.core.models import LogRecord, TaskRunRecord

FLUSH_INTERVAL = 0.05
FLUSH_SIZE = 500


class Recorder:
    """Batches task runs and log lines per client and writes them."""

    def __init__(self) -> None:
        self._runs: deque[TaskRunTracker] = deque()
        self._logs: deque[tuple[Client, LogRecord]] = deque()
        self._wake = threading.Event()
        # Serialises writers (background thread, flow ends, atexit) so the
        # records of one run reach the store in the order they were taken.
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._stopped = False
        # Producers set the event once per wake-up, not once per item past the threshold.
        self._wake_pending = False
        # True while the thread sleeps with nothing queued (no timed wake-ups then).
        self._idle = False

    # -- producers (hot path) ----------------------------------------------------------
    def touch(self, tracker: TaskRunTracker) -> None:
        """``tracker`` has new states to write."""
        runs = self._runs
        runs.append(tracker)
        if self._thread is None:
            self._start()
        elif self._idle or (len(runs) >= FLUSH_SIZE and not self._wake_pending):
            self._kick()

    def log(self, client: Client, record: LogRecord) -> None:
        """Queue one log line for ``client``'s store."""
        self._logs.append((client, record))
        if self._thread is None:
            self._start()
        elif self._idle or (len(self._logs) >= FLUSH_SIZE and not self._wake_pending):
            self._kick()

    def _kick(self) -> None:
        self._idle = False
        self._wake_pending = True
        self._wake.set()

    # -- writing -----------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything queued so far, now, in this thread; raises if the store fails."""
        with self._flush_lock:
            self._write()

    def _write(self) -> None:
        runs = self._runs
        # One record per run and batch: a run touched twice while this drains
        # (a worker moved it on meanwhile) must not become two inserts of one id.
        touched: dict[str, TaskRunTracker] = {}
        while True:
            try:
                tracker = runs.popleft()
            except IndexError:
                break
            touched[tracker.id] = tracker
        batches: dict[int, tuple[Client, list[TaskRunRecord], list[TaskRunTracker]]] = {}
        for tracker in touched.values():
            record = tracker.take_record()
            if record is None:
                continue
            entry = batches.get(id(tracker.client))
            if entry is None:
                entry = batches[id(tracker.client)] = (tracker.client, [], [])
            entry[1].append(record)
            entry[2].append(tracker)
        logs = self._logs
        log_batches: dict[int, tuple[Client, list[LogRecord]]] = {}
        while True:
            try:
                client, line = logs.popleft()
            except IndexError:
                break
            log_entry = log_batches.get(id(client))
            if log_entry is None:
                log_entry = log_batches[id(client)] = (client, [])
            log_entry[1].append(line)
        error: BaseException | None = None
        for client, records, trackers in batches.values():
            try:
                client.record_task_runs(records)
            except Exception as exc:
                error = self._isolate(client, records, trackers, exc) or error
        for client, lines in log_batches.values():
            try:
                client.write_logs(lines)
            except Exception as exc:
                logs.extend((client, line) for line in lines)
                error = exc
        if error is not None:
            raise error

    def _isolate(
        self,
        client: Client,
        records: list[TaskRunRecord],
        trackers: list[TaskRunTracker],
        exc: Exception,
    ) -> Exception | None:
        """A batch failed: keep what the store could not take now, drop what it refuses.

        Each record is tried alone. A record that fails because the store cannot
        be reached is kept for the next flush; one the store refuses (a value
        it rejects) is dropped and reported, so one bad record never blocks
        every later write.
        """
        kept: Exception | None = None
        for tracker, record in zip(trackers, records, strict=True):
            try:
                client.record_task_runs([record])
            except Exception as one_exc:
                if _looks_unreachable(one_exc):
                    tracker.unsend(record)
                    self._runs.append(tracker)
                    kept = one_exc
                else:
                    print(
                        f"headway: dropped the record of task run {record.id} ({record.name!r}):"
                        f" the store refused it: {one_exc}",
                        file=sys.stderr,
                    )
        return kept

    # -- background thread -------------------------------------------------------------
    def _start(self) -> None:
        with self._thread_lock:
            if self._thread is not None or self._stopped:
                return
            thread = threading.Thread(target=self._loop, name="headway-recorder", daemon=True)
            thread.start()
            self._thread = thread

    def _loop(self) -> None:
        wake = self._wake
        failures = 0
        while True:
            if self._idle:
                wake.wait()
            else:
                wake.wait(FLUSH_INTERVAL if not failures else min(5.0, 0.1 * 2**failures))
            wake.clear()
            self._wake_pending = False
            if not (self._runs or self._logs):
                self._idle = True
                # A producer that queued before it could see _idle gets flushed now.
                if not (self._runs or self._logs):
                    continue
                self._idle = False
            try:
                self.flush()
                failures = 0
            except Exception as exc:
                failures += 1
                if failures in (1, 10):
                    print(f"headway: could not record runs yet ({exc}); retrying", file=sys.stderr)

    def close(self) -> None:
        """Final flush at interpreter exit; errors are reported, never raised."""
        self._stopped = True
        if not (self._runs or self._logs):
            return
        try:
            self.flush()
        except Exception as exc:
            print(f"headway: could not record the last runs: {exc}", file=sys.stderr)


def _looks_unreachable(exc: Exception) -> bool:
    # A store that cannot be reached or is busy, as opposed to one that refuses a
    # record; drivers call the former OperationalError (sqlite3 and psycopg alike).
    if isinstance(exc, StoreError | ConnectionError | TimeoutError | OSError):
        return True
    return type(exc).__name__ in {"OperationalError", "InterfaceError"}


_recorder: Recorder | None = None
_recorder_lock = threading.Lock()


def get_recorder() -> Recorder:
    """The process's recorder (made on first use)."""
    global _recorder
    recorder = _recorder
    if recorder is not None:
        return recorder
    with _recorder_lock:
        if _recorder is None:
            _recorder = Recorder()
            atexit.register(_at_exit)
        return _recorder


def _at_exit() -> None:
    lifecycle.crash_unfinished_runs()
    recorder = _recorder
    if recorder is not None:
        recorder.close()


def reset_after_fork() -> None:
    """A forked child starts with empty queues and no thread (never the parent's)."""
    global _recorder
    _recorder = None


os.register_at_fork(after_in_child=reset_after_fork)

__all__ = ["FLUSH_INTERVAL", "FLUSH_SIZE", "Recorder", "get_recorder"]
