"""The Dask task runner: a flow run's tasks on the workers of a Dask cluster.

``DaskTaskRunner()`` starts a ``distributed.LocalCluster`` (worker processes)
for the flow run's lifetime; ``DaskTaskRunner(address="tcp://host:8786")``
uses a cluster that already runs. Needs ``pip install "headway[dask]"``.

How a task run travels:

* The flow's process keeps the run's :class:`~headway.futures.TaskFuture` and
  waits for its upstream runs there (their results are sent along as
  arguments), exactly as the process-pool runner does.
* On the Dask worker, :func:`run_on_worker` runs the one task engine
  (``run_in_thread``): states, retries, timeouts, tag slots and logs are the
  engine's own. The worker records the run through its own client, whatever
  ``get_client()`` gives there, after adopting the flow's ``HEADWAY_*``
  settings (sent with the task): with ``HEADWAY_API_URL`` it reports through
  the server, without it to the embedded SQLite store on this machine. Tag
  limits and ``concurrency()`` therefore acquire through the one shared
  store and hold across every worker.
* The worker's recorder writes the run as it goes, in background batches. When
  Dask tasks end, the flow's process has their workers flush (one call per
  worker and batch of results, not a store round trip per task on the
  worker's thread) and only then ends the runs' futures: when the flow run
  ends, every task run and log line of it is in the store. The flow's process
  adopts the worker's states (without writing them again) and the result; if a
  worker could not flush (it died), it writes the run's states itself.

Recording order: the flow's process writes a run's PENDING state at most
before the run is handed to Dask (the hand-off waits for any write in flight);
after that the worker writes, so the store never goes back to an older state
(the store skips states it already has when the flow's process must write).

A run whose worker died is decided in the flow's process: if the store never
saw it start it is handed out again; otherwise the death counts as a failed
attempt, retried per the task's ``retries`` or recorded CRASHED. Its slots
come back by themselves (the dead process's lease is reaped at once on the
same machine, or when it expires).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import pickle
import queue
import signal
import threading
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from headway._engine import task_engine as engine
from headway._engine.recorder import get_recorder
from headway._engine.task_engine import (
    Mode,
    TaskCall,
    cancelled_if_flow_run_ended,
    run_in_thread,
    upstream_of,
)
from headway._engine.tracking import (
    NO_RESULT,
    RunState,
    TaskRunTracker,
    cancelled_state,
    final_state,
    plain,
)
from headway._optional import require
from headway.client.base import Client, get_client, set_default_client
from headway.context import task_run_var
from headway.core.states import AWAITING_RETRY, Scheduled, State, StateType
from headway.exceptions import ObjectNotFound, ValidationError
from headway.futures import TaskFuture
from headway.logging import capture_prints, run_logger
from headway.settings import Settings, get_settings
from headway.task_runners import TaskRunner
from headway.tasks import Task

# dask, distributed and cloudpickle (the ``dask`` extra) are imported where they
# are used, never at the top: this module imports without the extra, so that
# DaskTaskRunner() can say which extra to install (``require``).

logger = logging.getLogger("headway.task_runners")

# A run whose worker died before the store saw it start is handed out again;
# past this many lost workers it is recorded CRASHED all the same.
MAX_UNSTARTED_LOSSES = 3


class DaskTaskRunner(TaskRunner):
    """Runs a flow run's tasks on a Dask cluster.

    ``address``: the scheduler of a running cluster (``"tcp://host:8786"``);
    None starts a ``distributed.LocalCluster`` when the flow run starts and
    closes it when the run ends. ``cluster_kwargs`` go to ``LocalCluster``
    (``processes=True`` unless given; e.g. ``{"n_workers": 4,
    "threads_per_worker": 2}``); ``client_kwargs`` to ``distributed.Client``.

    ``env``: the ``HEADWAY_*`` settings task code on the workers uses. By
    default the workers adopt the settings of the flow's own client (every
    setting that differs from its default; the rest fall back to defaults),
    so their records and slots land in the flow's store. Pass a mapping to set
    exactly those variables instead and leave the workers' others alone
    (``{}``: the workers' own environment). One worker process follows one
    configuration at a time.

    Task functions travel to the workers with cloudpickle (functions of a
    ``__main__`` script by value); code they import must be importable there.
    A script that starts a LocalCluster must guard its flow call with
    ``if __name__ == "__main__":`` (worker processes are spawned). An
    interrupted flow run stops the workers of its own LocalCluster at once; on
    a cluster at ``address`` only tasks not yet started are cancelled.
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValidationError(f"address must be a scheduler address string, got {address!r}")
        if address is not None and cluster_kwargs:
            raise ValidationError(
                "cluster_kwargs apply only to the LocalCluster started without an address"
            )
        for name, given in (("cluster_kwargs", cluster_kwargs), ("client_kwargs", client_kwargs)):
            if given is not None and not isinstance(given, Mapping):
                raise ValidationError(f"{name} must be a mapping, got {given!r}")
        if env is not None:
            if not isinstance(env, Mapping):
                raise ValidationError(f"env must be a mapping of HEADWAY_* variables, got {env!r}")
            for key, value in env.items():
                if not (isinstance(key, str) and key.startswith("HEADWAY_")):
                    raise ValidationError(f"env may only set HEADWAY_* variables, got {key!r}")
                if not isinstance(value, str):
                    raise ValidationError(f"env values must be strings, got {key}={value!r}")
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self.env = dict(env) if env is not None else None
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self._closed = False
        # Runs submitted and not yet final, and the Dask futures of those handed out.
        self._jobs: dict[int, _Job] = {}
        self._in_flight: dict[str, Any] = {}
        self._done: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._collector: threading.Thread | None = None
        # Per task and client: the task and its settings, pickled once for every run.
        self._specs: dict[tuple[int, int], tuple[Task[..., Any], bytes]] = {}
        self._timers: set[threading.Timer] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    def duplicate(self) -> DaskTaskRunner:
        return DaskTaskRunner(self.address, self.cluster_kwargs, self.client_kwargs, self.env)

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` of a started runner (None before start)."""
        return self._client

    @property
    def cluster(self) -> Any:
        """The LocalCluster this runner started (None when it uses ``address``)."""
        return self._cluster

    def start(self) -> None:
        if self._client is not None:
            return
        dask = require("dask")
        _distributed = require("distributed")
        distributed: Any = _distributed  # partly typed: its constructors are not
        self._closed = False
        if self.address is None:
            options = {"processes": True, **self.cluster_kwargs}
            # A worker that dies fails its tasks at once (KilledWorker) instead of
            # Dask re-running them elsewhere: the task's own retries decide.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = distributed.LocalCluster(**options)
            try:
                self._client = distributed.Client(self._cluster, **self.client_kwargs)
            except BaseException:
                self._cluster.close()
                self._cluster = None
                raise
        else:
            self._client = distributed.Client(self.address, **self.client_kwargs)
        self._collector = threading.Thread(
            target=self._collect_loop, name="headway-dask-collector", daemon=True
        )
        self._collector.start()

    def shutdown(self, wait: bool = True) -> None:
        collector = self._collector
        if wait and collector is not threading.current_thread():
            # Every run submitted ends first (a flow run has normally waited already).
            with self._lock:
                jobs = list(self._jobs.values())
            for job in jobs:
                job.future.wait()
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            cluster, self._cluster = self._cluster, None
            in_flight = list(self._in_flight.values())
            timers = list(self._timers)
            self._timers.clear()
            jobs = list(self._jobs.values())
        for timer in timers:
            timer.cancel()
        if in_flight and client is not None:
            try:
                client.cancel(in_flight)
            except Exception as exc:
                logger.warning("could not cancel Dask tasks: %s", exc)
            if cluster is not None:
                # The flow run was interrupted: its own workers stop now, as threads
                # of a thread pool would; a graceful close would wait for every
                # running task to return. Their slots come back with the processes.
                _kill_workers(cluster)
        if jobs:
            from distributed import CancelledError  # the dask extra (see the top)

            for job in jobs:  # whatever did not end: it never will now
                self._lost(job, CancelledError("the task runner shut down"))
        if collector is not None:
            self._done.put(None)
            if wait and collector is not threading.current_thread():
                collector.join()
            self._collector = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def __repr__(self) -> str:
        where = (
            f"address={self.address!r}" if self.address else f"cluster_kwargs={self.cluster_kwargs}"
        )
        return f"DaskTaskRunner({where})"

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, call: TaskCall) -> TaskFuture[Any]:
        if self._closed:
            raise RuntimeError("this task runner was shut down")
        if self._client is None:
            self.start()
        future: TaskFuture[Any] = TaskFuture(call.tracker, None)
        job = _Job(call, future)
        with self._lock:
            self._jobs[id(job)] = job
        upstream = upstream_of(call)
        pending = [f for f in upstream if not f.done()]
        if not pending:
            self._begin(job, upstream)
            return future
        remaining = [len(pending)]
        lock = threading.Lock()

        def one_done(_: TaskFuture[Any]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._begin(job, upstream)

        for f in pending:
            f.add_done_callback(one_done)
        return future

    def _begin(self, job: _Job, upstream: list[TaskFuture[Any]]) -> None:
        """Upstream runs are done: end the run here if it cannot start, else hand it out."""
        call = job.call
        try:
            state = engine.check_upstream(call, upstream) or engine.cancelled_if_flow_cancelled(
                call
            )
        except BaseException as exc:
            self._end(job, engine.interrupted_or_crashed(call, exc))
            return
        if state is not None:
            self._end(job, state)
            return
        self._dispatch(job)

    def _dispatch(self, job: _Job) -> None:
        call = job.call
        tracker = call.tracker
        try:
            if self._closed:
                raise RuntimeError("the task runner was shut down before the task run started")
            if engine.cancelled_if_flow_cancelled(call) is not None:
                self._end(job, tracker.state)
                return
            # From here on only the worker writes this run, starting with its current
            # state (the store skips it if this process wrote it already). The flush
            # waits for a write of this run that may be in flight, so that one lands
            # before anything the worker writes.
            tracker.sent = len(tracker.states)
            try:
                get_recorder().flush()
            except Exception as exc:  # the worker records the run itself; say why it waits
                logger.warning("could not record task runs before handing them to Dask: %s", exc)
            job.submissions += 1
            spec = self._spec(call)
            payload = _Payload(
                task_run_id=tracker.id,
                task_run_name=tracker.name,
                flow_run_id=tracker.flow_run_id,
                created=tracker.created,
                first=_plain(tracker.state),
                run_count=tracker.run_count,
                args=call.args,
                kwargs=call.kwargs,
                log_prints=call.log_prints,
            )
            key = f"{call.task.name}-{tracker.id.replace('-', '')}-{job.submissions}"
            client = self._client
            if client is None:
                raise RuntimeError("the task runner was shut down before the task run started")
            dask_future = client.submit(run_on_worker, spec, payload, key=key)
        except BaseException as exc:
            tracker.sent = 0  # no worker will write it: this process writes it all
            self._end(job, engine.interrupted_or_crashed(call, exc))
            return
        job.dask_future = dask_future
        with self._lock:
            self._in_flight[key] = dask_future
        done = self._done
        dask_future.add_done_callback(lambda _: done.put(job))

    def _spec(self, call: TaskCall) -> bytes:
        """The task and the workers' settings, pickled once per task and client."""
        task = call.task
        cache_key = (id(task), id(call.client))
        cached = self._specs.get(cache_key)
        if cached is not None and cached[0] is task:
            return cached[1]
        import cloudpickle  # the dask extra (see the top)

        env = self._worker_env(call.client)
        options = {
            "name": task.name,
            "retries": task.retries,
            "retry_delay_seconds": task.retry_delay_seconds,
            "timeout_seconds": task.timeout_seconds,
            "tags": task.tags,
            "log_prints": task.log_prints,
        }
        spec: bytes = cloudpickle.dumps((task.fn, options, task.task_key, env))
        self._specs[cache_key] = (task, spec)
        return spec

    def _worker_env(self, client: Client | None) -> tuple[tuple[str, str], ...]:
        if self.env is not None:
            return tuple(sorted(self.env.items()))
        if client is None:
            client = get_client()
        return settings_env(client.settings)

    # -- collecting ----------------------------------------------------------------------------
    def _collect_loop(self) -> None:
        done = self._done
        while True:
            job = done.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while True:
                try:
                    more = done.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._collect(batch)
            if stop:
                return

    def _collect(self, batch: list[_Job]) -> None:
        """Settle runs whose Dask tasks ended: fetch their outcomes, make their records
        durable (one flush per worker and batch), then end their futures."""
        results: dict[int, Any] = {}
        for job in batch:
            with self._lock:
                self._in_flight.pop(job.dask_future.key, None)
        finished = [j for j in batch if j.dask_future.status == "finished"]
        client = self._client
        if finished and client is not None:
            try:
                gathered = client.gather([j.dask_future for j in finished])
            except Exception:
                pass  # one of them could not be fetched: each is fetched alone below
            else:
                results = {id(j): r for j, r in zip(finished, gathered, strict=True)}
        for job in batch:
            if id(job) not in results:
                try:
                    results[id(job)] = job.dask_future.result()
                except BaseException as exc:
                    results[id(job)] = _Failed(exc)
            job.dask_future = None
        flushed = self._flush_workers(
            {r.worker for r in results.values() if isinstance(r, _Outcome) and r.worker}
        )
        for job in batch:
            try:
                self._settle(job, results[id(job)], flushed)
            except BaseException as exc:  # never leave a future hanging
                self._end(job, engine.interrupted_or_crashed(job.call, exc))

    def _flush_workers(self, addresses: set[str]) -> set[str]:
        """Have these workers write what they recorded; those that did."""
        client = self._client
        if not addresses or client is None:
            return set()
        try:
            answers = client.run(flush_records, workers=sorted(addresses), on_error="return")
        except Exception as exc:
            logger.warning("could not reach Dask workers to record their task runs: %s", exc)
            return set()
        done = set()
        for address, answer in answers.items():
            if answer is None:
                done.add(address)
            else:
                logger.warning("Dask worker %s could not record its task runs: %s", address, answer)
        return done

    def _settle(self, job: _Job, result: Any, flushed: set[str]) -> None:
        if isinstance(result, _Failed):
            self._lost(job, result.error)
            return
        if not isinstance(result, _Outcome):
            self._crashed(
                job, f"the Dask task returned {type(result).__name__}, not a task outcome"
            )
            return
        self._adopt(job, result, recorded=result.worker in flushed)

    def _adopt(self, job: _Job, outcome: _Outcome, *, recorded: bool) -> None:
        """Take over the worker's states and the run's result.

        ``recorded``: the worker has written them (else this process writes them all).
        """
        call = job.call
        tracker = call.tracker
        states = outcome.states
        problem = outcome.problem
        value: Any = NO_RESULT
        error: BaseException | None = None
        if problem is None:
            try:
                has_value, value, error = pickle.loads(outcome.result)
            except Exception as exc:
                problem = f"the task's result cannot be loaded in the flow's process: {exc}"
            else:
                value = value if has_value else NO_RESULT
        adopted = True
        last = len(states) - 1
        for i, state in enumerate(states):
            if i == last and state.is_final:
                if problem is not None:
                    break
                state = replace(
                    final_state(state.type, state.name, state.message, outcome=value, error=error),
                    timestamp=state.timestamp,
                )
            adopted = tracker.set_state(state) and adopted
        if not recorded:
            tracker.sent = 0
            engine.changed(call)
        elif adopted:
            tracker.sent = len(tracker.states)  # the worker wrote them
        if problem is not None:
            tracker.set_state(
                final_state(StateType.FAILED, message=problem, error=RuntimeError(problem))
            )
            engine.changed(call)
        elif not adopted:
            engine.changed(call)  # e.g. cancelled meanwhile: the flow's process writes the rest
        self._end(job, tracker.state)

    def _lost(self, job: _Job, exc: BaseException) -> None:
        """The Dask task failed without an outcome: a dead worker, a cancel, a bad payload."""
        from distributed import CancelledError, KilledWorker  # the dask extra (see the top)

        if self._closed or isinstance(exc, CancelledError):
            call = job.call
            call.tracker.set_state(
                cancelled_state("the task runner shut down before the task run finished")
            )
            self._record_and_end(job)
            return
        if not isinstance(exc, KilledWorker):
            self._crashed(job, f"the Dask task failed: {type(exc).__name__}: {exc}", exc)
            return
        call = job.call
        tracker = call.tracker
        stored_count, started = self._stored_progress(call)
        if not started:
            job.unstarted_losses += 1
            if job.unstarted_losses <= MAX_UNSTARTED_LOSSES:
                self._dispatch(job)
                return
        attempts = max(stored_count, tracker.run_count, 1)
        tracker.run_count = attempts
        message = f"the Dask worker running it died ({type(exc).__name__}: {exc})"
        if started and attempts <= call.task.retries and not tracker.state.is_final:
            delay = call.task.retry_delay(attempts)
            tracker.set_state(Scheduled(AWAITING_RETRY, message=message))
            _record_here(call)
            _run_log(call).warning(
                "Attempt %d of %d crashed (%s); retrying in %g s",
                attempts,
                call.task.retries + 1,
                message,
                delay,
            )
            self._later(delay, job)
            return
        self._crashed(job, message, exc)

    def _stored_progress(self, call: TaskCall) -> tuple[int, bool]:
        """How often the store saw the run start, and whether it did since it was handed out."""
        try:
            stored = call.client.read_task_run(call.tracker.id) if call.client else None
        except ObjectNotFound:  # no worker ever wrote it
            return call.tracker.run_count, False
        except Exception as exc:  # unknown: count the loss as a crashed attempt
            logger.warning("could not read task run %s: %s", call.tracker.id, exc)
            return call.tracker.run_count + 1, True
        if stored is None:
            return call.tracker.run_count + 1, True
        started = stored.run_count > call.tracker.run_count or stored.state.type not in (
            StateType.PENDING,
            StateType.SCHEDULED,
        )
        return stored.run_count, started

    def _later(self, delay: float, job: _Job) -> None:
        if delay <= 0:
            self._dispatch(job)
            return

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._dispatch(job)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._timers.add(timer)
        if closed:
            self._dispatch(job)  # ends the run: the runner is gone
            return
        timer.start()

    def _crashed(self, job: _Job, message: str, exc: BaseException | None = None) -> None:
        call = job.call
        error = exc if exc is not None else RuntimeError(message)
        if call.tracker.set_state(final_state(StateType.CRASHED, message=message, error=error)):
            _run_log(call).error("Finished in state Crashed: %s", message)
        self._record_and_end(job)

    def _record_and_end(self, job: _Job) -> None:
        _record_here(job.call)
        self._end(job, job.call.tracker.state)

    def _end(self, job: _Job, state: State) -> None:
        with self._lock:
            ended = self._jobs.pop(id(job), None) is not None
        if ended:
            engine.finish(job.call)
            job.future.set_final(state)


class _Job:
    """One submitted run in the flow's process, across its hand-outs to Dask."""

    __slots__ = ("call", "dask_future", "future", "submissions", "unstarted_losses")

    def __init__(self, call: TaskCall, future: TaskFuture[Any]) -> None:
        self.call = call
        self.future = future
        self.dask_future: Any = None
        self.submissions = 0
        self.unstarted_losses = 0


@dataclass(slots=True)
class _Payload:
    # A plain object, not a tuple: Dask does not look inside it for tasks or futures.
    task_run_id: str
    task_run_name: str
    flow_run_id: str | None
    created: float
    first: State
    run_count: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    log_prints: bool


@dataclass(slots=True)
class _Outcome:
    """What a worker sends back: the states after the first, and the result."""

    states: list[State]
    # (has a value, the value, the exception), pickled on the worker: once, and a
    # result that cannot travel is found there (``problem``), not in transit.
    result: bytes
    problem: str | None
    worker: str | None  # the Dask worker's address: where the records wait to be flushed


class _Failed:
    """A Dask task that ended without an outcome (its exception)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _plain(state: State) -> State:
    return plain(state)


def _kill_workers(cluster: Any) -> None:
    """SIGKILL the worker processes of a LocalCluster this runner started."""
    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)
        if isinstance(pid, int) and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _record_here(call: TaskCall) -> None:
    """The flow's process records the run again (no worker will): all its states.

    The worker may never have written the run, or written only part of it; the
    store skips the states it already has and takes the newest as the run's state.
    """
    call.tracker.sent = 0
    engine.changed(call)


def _run_log(call: TaskCall) -> Any:
    tracker = call.tracker
    return run_logger(
        flow_run_id=tracker.flow_run_id,
        task_run_id=tracker.id,
        label=f"Task run {tracker.name!r}",
        client=call.client,
    )


# -- settings travel with the task ------------------------------------------------------------
def settings_env(settings: Settings) -> tuple[tuple[str, str], ...]:
    """``settings`` as ``HEADWAY_*`` variables: a value where it differs from the default,
    ``""`` (unset) where it does not."""
    out = []
    for f in fields(Settings):
        var = f.metadata["env"]
        value = getattr(settings, f.name)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:  # pragma: no cover - every setting has a default
            default = None
        if value is None or value == default:
            out.append((var, ""))
        elif isinstance(value, bool):
            out.append((var, "true" if value else "false"))
        else:
            out.append((var, str(value)))
    return tuple(out)


# -- the worker side --------------------------------------------------------------------------
_specs: dict[bytes, tuple[Task[..., Any], str, tuple[tuple[str, str], ...]]] = {}
_SPECS_KEPT = 256
_env_lock = threading.Lock()
_applied_env: tuple[tuple[str, str], ...] | None = None
_clients: dict[Settings, Client] = {}


def run_on_worker(spec: bytes, payload: _Payload) -> _Outcome:
    """Run one task run on a Dask worker with the task engine; its states and result.

    The run is recorded by this process's client and batching recorder (live,
    as it goes); the flow's process has this worker flush them
    (:func:`flush_records`) before it ends the run's future, so it never writes
    them itself unless that flush fails.
    """
    task, task_key, env = _decode(spec)
    client = _adopt_env(env)
    tracker = TaskRunTracker(
        payload.task_run_id,
        payload.flow_run_id,
        payload.task_run_name,
        task_key,
        task.tags,
        client,
        payload.first,
    )
    tracker.created = payload.created
    tracker.run_count = payload.run_count
    if payload.log_prints:
        capture_prints()
    call = TaskCall(
        task,
        tracker,
        payload.args,
        payload.kwargs,
        None,
        None,
        payload.log_prints,
        Mode.BATCHED,
        client,
    )
    try:
        # The flow's process may be gone (cancelled, killed) while the task sat
        # in Dask's queue: a task of a run that ended never starts.
        final = cancelled_if_flow_run_ended(call, client) or run_in_thread(call)
    except BaseException:  # an interrupt inside the task: the engine recorded it
        final = tracker.state
    outcome: Any = None
    has_outcome = False
    error: BaseException | None = None
    packed = _packed.pop(payload.task_run_id, None)
    if isinstance(final, RunState):
        error = final.error

        if final.outcome is not NO_RESULT:
            outcome, has_outcome = final.outcome, True
    if has_outcome and error is None and packed is not None:
        result, problem = packed, None  # pickled when the attempt returned it
    else:
        result, problem = _pickled((has_outcome, outcome, error))
    return _Outcome([plain(s) for s in tracker.states[1:]], result, problem, _address())


def _address() -> str | None:
    try:
        from distributed import get_worker  # the dask extra (see the top)

        address: str = get_worker().address
        return address
    except Exception:  # not on a Dask worker (called directly)
        return None


async def flush_records() -> None:
    """Write this process's queued task runs and logs now (``Client.run`` on a worker).

    Runs off the worker's event loop: a store round trip must not stall Dask.
    """
    await asyncio.get_running_loop().run_in_executor(None, get_recorder().flush)


def _decode(spec: bytes) -> tuple[Task[..., Any], str, tuple[tuple[str, str], ...]]:
    cached = _specs.get(spec)
    if cached is not None:
        return cached
    import cloudpickle  # the dask extra (see the top)

    fn, options, task_key, env = cloudpickle.loads(spec)
    decoded = (Task(_packing(fn), **options), task_key, env)
    if len(_specs) >= _SPECS_KEPT:
        _specs.clear()
    _specs[spec] = decoded
    return decoded


def _adopt_env(env: tuple[tuple[str, str], ...]) -> Client:
    """Make this process's HEADWAY_* settings ``env``; the default client that follows them."""
    global _applied_env

    if env == _applied_env:
        return get_client()
    with _env_lock:
        if env != _applied_env:
            for var, value in env:
                if value:
                    os.environ[var] = value
                else:
                    os.environ.pop(var, None)

            settings = get_settings()
            current = get_client()
            if current.settings != settings:
                client = _clients.get(settings)
                if client is None:
                    client = _clients[settings] = get_client(settings)
                _clients.setdefault(current.settings, current)
                set_default_client(client)
            _applied_env = env
    return get_client()


class ResultCannotTravel(Exception):
    """A task's return value cannot be sent back from the Dask worker: the attempt failed."""


#: Return values already pickled for the trip back, by task run id (see _packing).
_packed: dict[str, bytes] = {}


def _packing(fn: Any) -> Any:
    """``fn``, whose return value is pickled for the trip back inside the attempt.

    A value that cannot travel fails the attempt, before the task run is
    recorded COMPLETED: a final state is never taken back afterwards.
    """

    def pack(value: Any) -> Any:
        result, problem = _pickled((True, value, None))
        if problem is not None:
            raise ResultCannotTravel(problem)
        ctx = task_run_var.get()
        if ctx is not None:
            _packed[ctx.task_run_id] = result
        return value

    if inspect.iscoroutinefunction(fn):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return pack(await fn(*args, **kwargs))

        return functools.wraps(fn)(run_async)

    def run(*args: Any, **kwargs: Any) -> Any:
        return pack(fn(*args, **kwargs))

    return functools.wraps(fn)(run)


def _pickled(result: tuple[bool, Any, BaseException | None]) -> tuple[bytes, str | None]:
    """``result`` pickled for the trip back, or why it cannot make it."""
    try:
        return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), None
    except Exception:
        pass
    try:  # functions and classes of a script go by value
        import cloudpickle  # the dask extra (see the top)

        return cloudpickle.dumps(result), None
    except Exception as exc:
        what = "exception" if result[2] is not None else "return value"
        return b"", f"the task's {what} cannot be sent back from the Dask worker: {exc}"


__all__ = ["DaskTaskRunner", "run_on_worker", "settings_env"]
