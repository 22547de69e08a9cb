"""Task runners: where a flow run's submitted tasks run.

* :class:`ThreadPoolTaskRunner` (the default) runs them on a pool of threads.
  ``max_workers`` defaults to ``HEADWAY_TASK_RUNNER_MAX_WORKERS``, itself
  Python's ThreadPoolExecutor default ``min(32, cpu_count + 4)``; at most that
  many of the flow run's tasks run at once. A worker thread that waits on a task
  no worker has started runs that task itself, so nested submissions never
  deadlock the pool, even with one thread.
* :class:`ProcessPoolTaskRunner` runs them in worker processes: the task
  function, its arguments and its result must be picklable, and the task must be
  importable by name (defined at module level; guard the script with
  ``if __name__ == "__main__":``). States and logs are recorded by the parent.
* :class:`DaskTaskRunner` (``pip install "headway[dask]"``) runs them on the workers
  of a Dask cluster: a LocalCluster for the flow run, or one at ``address``
  (``headway._engine.dask``; loaded on first use, never on import).

Every flow run gets its own copy of its runner (:meth:`TaskRunner.duplicate`),
started when the run starts and shut down when it ends.
"""

from __future__ import annotations

import abc
import contextvars
import os
import queue
import sys
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from headway._engine import task_engine as engine
from headway._engine.recorder import get_recorder
from headway._engine.task_call import Mode, TaskCall, changed
from headway._engine.task_engine import run_in_thread, upstream_of
from headway._engine.tracking import NO_RESULT, RunState, TaskRunTracker, final_state, plain
from headway.client.base import get_client
from headway.core.models import LogRecord
from headway.core.states import Failed, State, StateType
from headway.futures import FutureList, TaskFuture, mark_worker_thread
from headway.logging import capture_prints
from headway.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterable
    from concurrent.futures import Future as CFuture

    from headway._engine.dask import DaskTaskRunner as DaskTaskRunner
    from headway.tasks import Task


class TaskRunner(abc.ABC):
    """Runs the tasks a flow run submits.

    A runner implements :meth:`duplicate` and :meth:`submit`, in headway's form
    ``submit(call)`` or in Prefect's ``submit(task, parameters, wait_for=None,
    dependencies=None)`` (see :mod:`headway._runner_calls`); :meth:`map`,
    :meth:`start` and :meth:`shutdown` have defaults.
    """

    @abc.abstractmethod
    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same options (one per flow run)."""

    def start(self) -> None:  # noqa: B027 - a runner with nothing to set up needs no start
        """Get ready to accept tasks."""

    @abc.abstractmethod
    def submit(self, call: TaskCall) -> TaskFuture[Any]:
        """Schedule a PENDING task run; its future."""

    def shutdown(self, wait: bool = True) -> None:  # noqa: B027 - nothing to stop by default
        """Stop accepting tasks; with ``wait``, return once every worker is gone."""

    def join_interrupted(self) -> None:
        """After ``shutdown(wait=False)`` of an interrupted flow run: wait until the
        task code it interrupted in this process has ended and given back its slots.

        (Task code elsewhere, in other processes or on a cluster, ends on its own.)
        """
        return None

    def map(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[TaskFuture[Any]] | None = None,
    ) -> FutureList[Any]:
        """Prefect's ``map``: submit one run per item of the iterable parameters.

        Parameters wrapped in ``unmapped``, and strings, bytes and mappings, go
        whole to every run; a future is waited for and its result mapped over.
        """
        from headway._runner_calls import map_parameters

        return map_parameters(self, task, parameters, wait_for)

    def __enter__(self) -> TaskRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=exc[0] is None)


#: How long a cancelled flow run waits for the task code it interrupted in its
#: threads to end (and give its slots back) before its process may exit.
JOIN_INTERRUPTED_SECONDS = 10.0


def _positive(max_workers: int | None) -> int | None:
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
    return max_workers


class ThreadPoolTaskRunner(TaskRunner):
    """Runs tasks on up to ``max_workers`` threads (threads start as work arrives)."""

    def __init__(self, max_workers: int | None = None) -> None:
        self._requested = _positive(max_workers)
        self._queue: queue.SimpleQueue[TaskFuture[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # One token per worker that finished an item and went back to waiting:
        # a submit that takes a token needs no new thread. A deque, not a
        # Semaphore: append/pop are atomic and cost a fraction of a Condition.
        self._idle: deque[None] = deque()
        self._lock = threading.Lock()
        self._max: int | None = None
        self._closed = False
        self._stopping: list[threading.Thread] = []
        self._started = False

    @property
    def max_workers(self) -> int:
        """How many tasks of the flow run may run at once."""
        if self._max is None:
            if self._requested is not None:
                self._max = self._requested
            else:
                self._max = get_settings().task_runner_max_workers
        return self._max

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self._requested)

    def __eq__(self, other: object) -> bool:
        # As in Prefect: runners of the same kind with the same options are equal.
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ThreadPoolTaskRunner)
        return self._requested == other._requested

    def __hash__(self) -> int:
        return hash((type(self), self._requested))

    def start(self) -> None:
        self.max_workers  # noqa: B018 - resolve the setting before any task runs
        self._closed = False
        self._started = True

    def submit(
        self,
        call: Any,
        parameters: dict[str, Any] | None = None,
        wait_for: Iterable[TaskFuture[Any]] | None = None,
        dependencies: Any = None,
    ) -> TaskFuture[Any]:
        """Run a task on the pool: ``submit(call)``, or Prefect's ``submit(task, parameters)``."""
        if parameters is not None or wait_for is not None:
            from headway._runner_calls import PreparedParameters, call_for

            if not isinstance(parameters, PreparedParameters) and not self._started:
                raise RuntimeError("Task runner is not started; use it in a `with` block")
            call = call_for(call, parameters, wait_for)
        if self._closed:
            raise RuntimeError("this task runner was shut down")
        ctx = contextvars.copy_context()

        def work(future: TaskFuture[Any]) -> None:
            try:
                ctx.run(run_in_thread, call)
            finally:
                future.set_final(call.tracker.state)

        future: TaskFuture[Any] = TaskFuture(call.tracker, work)
        self._queue.put(future)
        try:
            self._idle.pop()
        except IndexError:
            if len(self._threads) < self.max_workers:
                self._spawn()
        return future

    def _spawn(self) -> None:
        with self._lock:
            if len(self._threads) >= self.max_workers:
                return
            thread = threading.Thread(
                target=self._work_loop,
                name=f"headway-task-{len(self._threads)}",
                daemon=True,
            )
            self._threads.append(thread)
        thread.start()

    def _work_loop(self) -> None:
        mark_worker_thread()
        get = self._queue.get
        idle = self._idle
        try:
            while True:
                future = get()
                if future is None:
                    return
                try:
                    future.run_here()
                except BaseException:  # SystemExit from a task: the run is recorded; go on
                    pass
                del future
                idle.append(None)
        finally:
            # Only a thread that ran an async task has a loop to close; importing
            # loops otherwise would load asyncio for nothing.
            if "headway._engine.loops" in sys.modules:
                from headway._engine.loops import close_thread_loop

                close_thread_loop()

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            self._started = False
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        if not wait:
            self._stopping.extend(threads)
            return
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join()

    def join_interrupted(self) -> None:
        # The threads are daemons: an interpreter exiting would stop them
        # wherever they are, before the slots of their interrupted code go back.
        # Bounded: code blocked in C for good (a wait with no timeout) is not
        # worth a process that never exits; its slots come back when the process
        # is gone (reaped at once on this machine, else when the lease expires).
        import time

        current = threading.current_thread()
        stopping, self._stopping = self._stopping, []
        deadline = time.monotonic() + JOIN_INTERRUPTED_SECONDS
        for thread in stopping:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self._requested})"


class ProcessPoolTaskRunner(TaskRunner):
    """Runs tasks in up to ``max_workers`` processes (default: one per CPU).

    ``mp_context`` is the multiprocessing start method: ``"spawn"`` (default:
    safe with threads, needs importable tasks), ``"forkserver"`` or ``"fork"``.
    """

    def __init__(self, max_workers: int | None = None, mp_context: str = "spawn") -> None:
        self._requested = _positive(max_workers)
        self.max_workers = self._requested or os.cpu_count() or 1
        self.mp_context = mp_context
        self._executor: Any = None
        self._lock = threading.Lock()

    def duplicate(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(self._requested, self.mp_context)

    def start(self) -> None:
        if self._executor is None:
            # A process pool only: these cost a thread-pool program's cold start.
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._executor = ProcessPoolExecutor(
                max_workers=self.max_workers,
                mp_context=multiprocessing.get_context(self.mp_context),
            )

    def submit(self, call: TaskCall) -> TaskFuture[Any]:
        if self._executor is None:
            self.start()
        future: TaskFuture[Any] = TaskFuture(call.tracker, None)
        upstream = upstream_of(call)
        pending = [f for f in upstream if not f.done()]
        if not pending:
            self._dispatch(call, future, upstream)
            return future
        remaining = [len(pending)]
        lock = threading.Lock()

        def one_done(_: TaskFuture[Any]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._dispatch(call, future, upstream)

        for f in pending:
            f.add_done_callback(one_done)
        return future

    def _dispatch(
        self, call: TaskCall, future: TaskFuture[Any], upstream: list[TaskFuture[Any]]
    ) -> None:
        try:
            state = engine.check_upstream(call, upstream) or engine.cancelled_if_flow_cancelled(
                call
            )
            if state is not None:
                engine.finish(call)
                future.set_final(state)
                return
            if call.task.tags and call.mode is not Mode.COLLECT:
                # The slot engine sees the PENDING run before the worker asks for slots.
                recorder = get_recorder()
                recorder.touch(call.tracker)
                recorder.flush()
            tracker = call.tracker
            job = _ChildJob(
                task=call.task,
                task_run_id=tracker.id,
                task_run_name=tracker.name,
                flow_run_id=tracker.flow_run_id,
                first=plain(tracker.state),
                args=call.args,
                kwargs=call.kwargs,
                log_prints=call.log_prints,
            )
            cf = self._executor.submit(run_in_child, job)
        except BaseException as exc:
            future.set_final(engine.interrupted_or_crashed(call, exc))
            engine.finish(call)
            return
        cf.add_done_callback(lambda done: self._collect(call, future, done))

    def _collect(self, call: TaskCall, future: TaskFuture[Any], done: CFuture[Any]) -> None:
        tracker = call.tracker
        try:
            try:
                result: _ChildResult = done.result()
            except BaseException as exc:
                message = f"the worker process could not run the task: {type(exc).__name__}: {exc}"
                tracker.set_state(final_state(StateType.CRASHED, message=message, error=exc))
                changed(call)
                return
            last = len(result.states) - 1
            for i, state in enumerate(result.states):
                if i == last and state.is_final:
                    state = final_state(
                        state.type,
                        state.name,
                        state.message,
                        outcome=result.outcome,
                        error=result.error,
                    )
                    # Keep the child's timestamp: it is when the run really ended.
                    state = _with_timestamp(state, result.states[i].timestamp)
                tracker.set_state(state)
            changed(call)
            recorder = get_recorder()
            client = call.client
            for line in result.logs:
                recorder.log(client, line)  # type: ignore[arg-type]
        finally:
            engine.finish(call)
            future.set_final(tracker.state)

    def shutdown(self, wait: bool = True) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=not wait)

    def __repr__(self) -> str:
        return (
            f"ProcessPoolTaskRunner(max_workers={self._requested}, mp_context={self.mp_context!r})"
        )


def _with_timestamp(state: State, timestamp: Any) -> State:
    return replace(state, timestamp=timestamp)


# -- the worker-process side ----------------------------------------------------------------
@dataclass
class _ChildJob:
    task: Task[..., Any]
    task_run_id: str
    task_run_name: str
    flow_run_id: str | None
    first: State
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    log_prints: bool


@dataclass
class _ChildResult:
    states: list[State]
    outcome: Any
    error: BaseException | None
    logs: list[LogRecord]


_child_sigterm_installed = False


def _on_sigterm_in_child(signum: int, frame: Any) -> None:
    # SIGTERM to the flow's process group (a worker cancelling the run): the task
    # running here is interrupted like one in a thread, and gives its slots back.
    from headway._engine.interrupts import interrupt_all

    if interrupt_all() == 0:  # nothing to interrupt: go as SIGTERM says
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _install_child_sigterm() -> None:
    global _child_sigterm_installed
    if _child_sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm_in_child)
    _child_sigterm_installed = True


def run_in_child(job: _ChildJob) -> _ChildResult:
    """Run one task in a worker process; its states and logs go back to the parent."""
    # In the pool's processes only (a thread-pool program never loads pickle).
    import pickle

    _install_child_sigterm()

    logs: list[LogRecord] = []
    task = job.task
    tracker = TaskRunTracker(
        job.task_run_id,
        job.flow_run_id,
        job.task_run_name,
        task.task_key,
        task.tags,
        None,
        job.first,
    )
    client = None
    if task.tags:
        client = get_client()
    if job.log_prints:
        capture_prints()
    call = TaskCall(
        task,
        tracker,
        job.args,
        job.kwargs,
        None,
        None,
        job.log_prints,
        Mode.COLLECT,
        client,
        lambda _client, line: logs.append(line),
    )
    final = run_in_thread(call)
    states = [plain(s) for s in tracker.states[1:]]
    outcome: Any = NO_RESULT
    error: BaseException | None = None
    if isinstance(final, RunState):
        outcome, error = final.outcome, final.error
    try:
        pickle.dumps((outcome, error))
    except Exception as exc:
        what = "exception" if error is not None else "return value"
        message = f"the task's {what} cannot be sent back from the worker process: {exc}"
        states[-1] = Failed(message=message, timestamp=states[-1].timestamp)
        outcome, error = NO_RESULT, RuntimeError(message)
    return _ChildResult(states, outcome, error, logs)


def __getattr__(name: str) -> Any:
    # DaskTaskRunner loads on first use: importing this module never imports Dask
    # (an optional extra, and heavy).
    if name == "DaskTaskRunner":
        from headway._engine.dask import DaskTaskRunner

        return DaskTaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# DaskTaskRunner is left out on purpose: `import *` must not import Dask.
__all__ = ["ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]
