"""Settling runs whose Dask tasks ended (the flow's process): outcomes, records, retries."""

from __future__ import annotations

import logging
import pickle
import queue
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from headway._engine.dask.payload import _Failed, _Outcome
from headway._engine.dask.worker import flush_records

if TYPE_CHECKING:
    from headway._engine.dask.runner import _Job
    from headway._engine.task_call import TaskCall
    from headway.core.states import State

logger = logging.getLogger("headway.task_runners")


# A run whose worker died before the store saw it start is handed out again;
# past this many lost workers it is recorded CRASHED all the same.
MAX_UNSTARTED_LOSSES = 3


class Collecting:
    """The collecting half of :class:`~headway._engine.dask.runner.DaskTaskRunner`."""

    _client: Any
    _lock: threading.Lock
    _closed: bool
    _jobs: dict[int, _Job]
    _in_flight: dict[str, Any]
    _done: queue.SimpleQueue[_Job | None]
    _timers: set[threading.Timer]

    if TYPE_CHECKING:

        def _dispatch(self, job: _Job) -> None: ...

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
                from headway._engine import task_engine as engine

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
        from headway._engine.task_call import changed
        from headway._engine.tracking import NO_RESULT, final_state
        from headway.core.states import StateType

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
            changed(call)
        elif adopted:
            tracker.sent = len(tracker.states)  # the worker wrote them
        if problem is not None:
            tracker.set_state(
                final_state(StateType.FAILED, message=problem, error=RuntimeError(problem))
            )
            changed(call)
        elif not adopted:
            changed(call)  # e.g. cancelled meanwhile: the flow's process writes the rest
        self._end(job, tracker.state)

    def _lost(self, job: _Job, exc: BaseException) -> None:
        """The Dask task failed without an outcome: a dead worker, a cancel, a bad payload."""
        from distributed import CancelledError, KilledWorker

        if self._closed or isinstance(exc, CancelledError):
            from headway._engine.tracking import cancelled_state

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
            from headway.core.states import AWAITING_RETRY, Scheduled

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
        from headway.core.states import StateType
        from headway.exceptions import ObjectNotFound

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
        from headway._engine.tracking import final_state
        from headway.core.states import StateType

        call = job.call
        error = exc if exc is not None else RuntimeError(message)
        if call.tracker.set_state(final_state(StateType.CRASHED, message=message, error=error)):
            _run_log(call).error("Finished in state Crashed: %s", message)
        self._record_and_end(job)

    def _record_and_end(self, job: _Job) -> None:
        _record_here(job.call)
        self._end(job, job.call.tracker.state)

    def _end(self, job: _Job, state: State) -> None:
        from headway._engine import task_engine as engine

        with self._lock:
            ended = self._jobs.pop(id(job), None) is not None
        if ended:
            engine.finish(job.call)
            job.future.set_final(state)


def _record_here(call: TaskCall) -> None:
    """The flow's process records the run again (no worker will): all its states.

    The worker may never have written the run, or written only part of it; the
    store skips the states it already has and takes the newest as the run's state.
    """
    from headway._engine.task_call import changed

    call.tracker.sent = 0
    changed(call)


def _run_log(call: TaskCall) -> Any:
    from headway.logging import run_logger

    tracker = call.tracker
    return run_logger(
        flow_run_id=tracker.flow_run_id,
        task_run_id=tracker.id,
        label=f"Task run {tracker.name!r}",
        client=call.client,
    )
