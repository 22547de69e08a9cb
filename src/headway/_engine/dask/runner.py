"""The Dask task runner in the flow's process: starting, handing runs out, shutting down."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from headway._engine.dask.collect import Collecting
from headway._engine.dask.payload import _Payload, _plain, settings_env
from headway._engine.dask.worker import run_on_worker
from headway._optional import require
from headway.futures import TaskFuture
from headway.task_runners import TaskRunner

if TYPE_CHECKING:
    from headway._engine.task_call import TaskCall
    from headway.client.base import Client
    from headway.tasks import Task

logger = logging.getLogger("headway.task_runners")


class DaskTaskRunner(Collecting, TaskRunner):
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
    a cluster at ``address`` tasks not yet started are cancelled, and running
    ones are interrupted on their worker once it finds their flow run cancelled
    (:mod:`headway._engine.interrupts`).
    """

    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from headway.exceptions import ValidationError

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
            from distributed import CancelledError

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
        from headway._engine.task_engine import upstream_of

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
        from headway._engine import task_engine as engine

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
        from headway._engine import task_engine as engine
        from headway._engine.recorder import get_recorder

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
        import cloudpickle

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
            from headway.client.base import get_client

            client = get_client()
        return settings_env(client.settings)


class _Job:
    """One submitted run in the flow's process, across its hand-outs to Dask."""

    __slots__ = ("call", "dask_future", "future", "submissions", "unstarted_losses")

    def __init__(self, call: TaskCall, future: TaskFuture[Any]) -> None:
        self.call = call
        self.future = future
        self.dask_future: Any = None
        self.submissions = 0
        self.unstarted_losses = 0


def _kill_workers(cluster: Any) -> None:
    """SIGKILL the worker processes of a LocalCluster this runner started."""
    import signal

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)
        if isinstance(pid, int) and pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
