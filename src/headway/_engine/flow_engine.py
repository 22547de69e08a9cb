"""The flow engine: one flow run from PENDING to a final state.

A flow run's own state changes are few and are written at once; its task runs
and log lines go through the recorder, which is flushed before the flow run
records its final state. So a reader that sees a flow run finished also sees
all of its task runs and logs.

Order at the end of an attempt: wait for every task the run submitted (a flow
run never ends while its tasks still run), then record COMPLETED, or
AwaitingRetry and try again, or FAILED. An interrupt (Ctrl-C, SIGTERM while
the flow runs in the main thread, cancellation of an async flow) records the
flow run and its unfinished task runs CANCELLED, then lets the exception go on;
the flow's own code interrupted because the run was cancelled (see
:mod:`headway._engine.interrupts`) ends it CANCELLED, and the call raises
``RunCancelled``. The steps are written once here; the thin drivers that call
them in order are in :mod:`headway._engine.flow_drivers`.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from headway._engine import interrupts, lifecycle
from headway._engine.names import generate_name
from headway._engine.recorder import get_recorder
from headway._engine.task_call import new_run_id
from headway._engine.task_engine import traceback_once
from headway._engine.tracking import (
    TaskRunTracker,
    cancelled_state,
    final_state,
    plain,
    state_result,
)
from headway.client.base import get_client
from headway.context import FlowRunContext, current_tags, flow_run_var, task_run_var
from headway.core.states import AWAITING_RETRY, RETRYING, Pending, Running, Scheduled, State
from headway.core.states import StateType as S
from headway.exceptions import HeadwayError
from headway.logging import RunLogger, capture_prints, run_logger
from headway.task_runners import ThreadPoolTaskRunner

if TYPE_CHECKING:
    from contextvars import Token

    from headway.flows import Flow


#: Set by a worker (``headway.worker.execute``) around the call of a deployment's
#: flow: ``(run_id, run_name)`` of the run already recorded PENDING, which the
#: call runs instead of recording a new one.
adopted_run: ContextVar[tuple[str, str] | None] = ContextVar("headway_adopted_run", default=None)


class TerminationSignal(SystemExit):
    """Raised in the main thread when SIGTERM arrives while a flow runs there."""


_hostname: str | None = None


def _host() -> str:
    global _hostname
    if _hostname is None:
        _hostname = socket.gethostname()
    return _hostname


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data; anything JSON cannot hold becomes its ``repr``."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if depth > 20:
        return repr(value)
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {
            (
                k
                if isinstance(k, str)
                else str(k)
                if isinstance(k, int | float | bool)
                else repr(k)
            ): (jsonable(v, depth + 1))
            for k, v in value.items()
        }
    return repr(value)


class FlowRunEngine:
    """The steps of one flow run; the drivers below call them in order."""

    def __init__(self, flow: Flow[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.flow = flow
        try:
            bound = flow.signature.bind(*args, **kwargs)
        except TypeError as exc:
            # Like calling the function: nothing is recorded for a call that cannot bind.
            raise TypeError(f"{flow.name}(): {exc}") from None
        bound.apply_defaults()
        self.args, self.kwargs = bound.args, bound.kwargs
        self.parameters = dict(bound.arguments)
        self.parent_flow = flow_run_var.get()
        self.parent_task = task_run_var.get()
        if self.parent_flow is not None:
            self.client = self.parent_flow.client
        elif self.parent_task is not None and self.parent_task.client is not None:
            self.client = self.parent_task.client
        else:
            self.client = get_client()
        self.pid = os.getpid()
        self.id = new_run_id()
        self.name = flow.run_name(self.parameters) or generate_name()
        # A worker running a deployment's run: this top-level run is that recorded one.
        adopted = adopted_run.get()
        self.adopted = adopted is not None and self.parent_flow is None and self.parent_task is None
        if adopted is not None and self.adopted:
            self.id, self.name = adopted
        self.attempts = 0
        self.recorded = False  # the run exists in the store
        self.final: State | None = None
        # How the run ends, claimed once: an interrupt (Ctrl-C, exit) racing the
        # run's own end must not record two final states.
        self._ending: State | None = None
        self._end_lock = threading.Lock()
        self.subflow: TaskRunTracker | None = None
        self.ctx: FlowRunContext | None = None
        self._tokens: tuple[Token[Any], Token[Any]] | None = None
        self._previous_sigterm: Any = None
        self._logger: RunLogger | None = None
        self._forget_cancel: Any = None
        self._cancel_noticed = False

    # -- steps -----------------------------------------------------------------------------
    def start(self, *, handle_sigterm: bool) -> None:
        """Record the run PENDING, set up its context and task runner."""
        flow = self.flow
        parent_task_run_id = None
        if self.parent_flow is not None or self.parent_task is not None:
            parent_run_id = (
                self.parent_task.flow_run_id
                if self.parent_task is not None
                else self.parent_flow.flow_run_id  # type: ignore[union-attr]
            )
            name = (
                self.parent_flow.next_task_run_name(flow.name)
                if self.parent_flow is not None
                else f"{flow.name}-{self.name}"
            )
            # A subflow appears in its parent as a task run that mirrors its states.
            tracker = TaskRunTracker(
                new_run_id(), parent_run_id, name, flow.key, (), self.client, Pending()
            )
            self.subflow = tracker
            parent_task_run_id = tracker.id
            if self.parent_flow is not None:
                self.parent_flow.unfinished[tracker.id] = tracker
            self._mirror()
        if flow.log_prints is not None:
            log_prints = flow.log_prints
        elif self.parent_flow is not None:
            log_prints = self.parent_flow.log_prints
        else:
            log_prints = self.client.settings.log_prints
        if log_prints:
            capture_prints()
        if not self.adopted:
            self.client.create_flow_run(
                id=self.id,
                name=self.name,
                flow_name=flow.name,
                state=Pending(),
                parameters=jsonable(self.parameters),
                parent_task_run_id=parent_task_run_id,
                tags=current_tags(),
                pid=os.getpid(),
                host=_host(),
            )
        self.recorded = True
        if flow.task_runner is not None:
            runner = flow.task_runner.duplicate()
        else:
            runner = ThreadPoolTaskRunner()
        runner.start()
        self.ctx = FlowRunContext(
            flow, self.id, self.name, self.client, runner, log_prints, parent=self.parent_flow
        )
        self._tokens = (flow_run_var.set(self.ctx), task_run_var.set(None))
        lifecycle.register(self)
        # Cancelled in the store while it runs (no worker's signal reaches a flow
        # run of a script): the watch stops its tasks from starting, then
        # interrupts its code and its tasks' code.
        self._forget_cancel = interrupts.on_cancel(self.id, self.client, self._on_cancel)
        if handle_sigterm and self.parent_flow is None and self.parent_task is None:
            self._previous_sigterm = _install_sigterm()
        self.logger.info("Beginning flow run %r for flow %r", self.name, flow.name)

    def _on_cancel(self) -> None:
        # From the watch's thread, each time it finds the run cancelled.
        ctx = self.ctx
        if ctx is None or self._cancel_noticed:
            return
        self._cancel_noticed = True
        ctx.cancel_event.set()
        self.logger.warning("Flow run is being cancelled: interrupting its code as Python allows")

    @property
    def logger(self) -> RunLogger:
        """The run's logger (engine messages are run logs too)."""
        if self._logger is None:
            self._logger = run_logger(
                flow_run_id=self.id,
                task_run_id=None,
                label=f"Flow run {self.name!r}",
                client=self.client,
            )
        return self._logger

    def begin_attempt(self) -> None:
        """Enter RUNNING (``Retrying`` after the first attempt)."""
        self.attempts += 1
        self.client.set_flow_run_state(
            self.id, Running(RETRYING) if self.attempts > 1 else Running()
        )
        if self.attempts == 1 and self.subflow is not None:
            self.subflow.set_state(Running())
            self._mirror()

    def _next_unfinished(self) -> Any:
        # Any submitted run not done yet (tasks may submit more while we wait), or None.
        assert self.ctx is not None
        futures = self.ctx.futures
        while futures:
            try:
                return next(iter(futures.values()))
            except (StopIteration, RuntimeError):  # changed under us: look again
                continue
        return None

    def wait_for_tasks(self) -> None:
        """Block until every submitted task run is done."""
        assert self.ctx is not None
        while (future := self._next_unfinished()) is not None:
            future.wait()
            self.ctx.futures.pop(future.task_run_id, None)

    async def wait_for_tasks_async(self) -> None:
        """Wait (without blocking the loop) until every submitted task run is done."""
        assert self.ctx is not None
        while (future := self._next_unfinished()) is not None:
            await future._wait_async_quietly()
            self.ctx.futures.pop(future.task_run_id, None)

    def succeeded(self, value: Any) -> None:
        """Record COMPLETED with the flow's return value (CANCELLED if it was cancelled)."""
        if self.ctx is not None and self.ctx.cancel_event.is_set():
            cancelled = self._cancelling_in_store()
            if cancelled is not None:
                self._end_interrupted(cancelled)
                return
        self._finish(final_state(S.COMPLETED, outcome=value))

    def failed(self, exc: BaseException) -> float | None:
        """Record a failed attempt: the retry delay if it will be retried, else None (FAILED)."""
        flow = self.flow
        message = f"{type(exc).__name__}: {exc}"
        if self._ending is not None:  # already ending (interrupted meanwhile): no retry
            return None
        cancelled = self._cancelling_in_store()
        if cancelled is not None:
            # Cancelled while it ran: its waiting tasks were refused their slots
            # (and raised RunCancelled here) before the worker's SIGTERM came.
            self._end_interrupted(cancelled)
            return None
        if self.attempts <= flow.retries:
            delay = flow.retry_delay(self.attempts)
            self.logger.warning(
                "Attempt %d of %d failed (%s); retrying in %g s",
                self.attempts,
                flow.retries + 1,
                message,
                delay,
            )
            self.client.set_flow_run_state(self.id, Scheduled(AWAITING_RETRY, message=message))
            return delay
        self._finish(final_state(S.FAILED, message=message, error=exc))
        return None

    def interrupted(self, exc: BaseException) -> None:
        """Record CANCELLED (interrupts) or CRASHED (anything else), with unfinished tasks."""
        if self._ending is not None or lifecycle.pid != self.pid:
            return
        kind = type(exc).__name__
        if (
            isinstance(exc, KeyboardInterrupt | TerminationSignal | interrupts.TaskRunCancelled)
            or kind == "CancelledError"
        ):
            why = (
                "terminated (SIGTERM)"
                if isinstance(exc, TerminationSignal)
                else "cancelled"
                if isinstance(exc, interrupts.TaskRunCancelled)
                else f"interrupted ({kind})"
            )
            state: State = cancelled_state(f"the flow run was {why}")
        else:
            state = final_state(S.CRASHED, message=f"{kind}: {exc}", error=exc)
        self._end_interrupted(state)

    def cancelled(self) -> None:
        """The flow's own code was interrupted because the run was cancelled (the
        watch found it CANCELLING): end CANCELLED with the cancel's reason."""
        self._end_interrupted(
            self._cancelling_in_store() or cancelled_state("the flow run was cancelled")
        )

    def _cancelling_in_store(self) -> State | None:
        """CANCELLED, with the cancel's reason, when the store has the run CANCELLING."""
        try:
            stored = self.client.read_flow_run(self.id).state
        except HeadwayError:
            return None
        if stored.type is not S.CANCELLING:
            return None
        return cancelled_state(stored.message or "the flow run was cancelled")

    def _end_interrupted(self, state: State) -> None:
        """End the run in ``state`` (CANCELLED or CRASHED), its unfinished tasks with it."""
        if not self._claim(state):
            return
        ctx = self.ctx
        if ctx is None:  # interrupted while starting: no task can have run yet
            if self.recorded:
                try:
                    self._finish(state)
                except Exception:
                    self.final = state
            return
        ctx.cancel_event.set()
        # Its task runs' code still running in this process stops as Python allows
        # (at its next bytecode); their `with concurrency()` blocks give slots back.
        interrupts.interrupt_flow_run(self.id)
        message = f"the flow run ended {state.name} before this task run finished"

        def task_end() -> State:
            # Unfinished task runs end the way their flow run did.
            if state.type is S.CANCELLED:
                return cancelled_state(message)
            return final_state(S.CRASHED, message=message, error=RuntimeError(message))

        recorder = get_recorder()
        for future in list(ctx.futures.values()):
            if not future.done() and not future.cancel():
                future._tracker.set_state(task_end())
                future.set_final(future._tracker.state)
            recorder.touch(future._tracker)
        ctx.futures.clear()
        for tracker in list(ctx.unfinished.values()):
            tracker.set_state(task_end())
            recorder.touch(tracker)
        ctx.unfinished.clear()
        ctx.task_runner.shutdown(wait=False)
        try:
            self.logger.warning("Flow run %s: %s", state.name.lower(), state.message)
            self._finish(state)
        except Exception as store_exc:  # the store may be what failed: say so, keep the cause
            print(f"headway: could not record flow run {self.id}: {store_exc}", file=sys.stderr)
            self.final = state

    def _claim(self, state: State) -> bool:
        with self._end_lock:
            if self._ending is not None:
                return False
            self._ending = state
            return True

    def _finish(self, state: State) -> None:
        if self._ending is not state and not self._claim(state):
            return  # the run is already ending another way (interrupted meanwhile)
        if lifecycle.pid != self.pid:  # a forked child leaving the flow: not its run
            self.final = state
            return
        if state.type is S.COMPLETED:
            self.logger.info("Finished in state %s", state.name)
        elif state.type is not S.CANCELLED:
            error = traceback_once(getattr(state, "error", None))
            self.logger.error("Finished in state %s: %s", state.name, state.message, exc_info=error)
        try:
            get_recorder().flush()
            self.client.set_flow_run_state(self.id, plain(state))
        except BaseException:
            with self._end_lock:  # not recorded: let the error path try to end it
                if self._ending is state:
                    self._ending = None
            raise
        self.final = state
        if self.subflow is not None:
            self.subflow.set_state(state)
            self._mirror()

    def _mirror(self) -> None:
        # The subflow's task run in its parent follows the subflow's own states.
        sub = self.subflow
        assert sub is not None
        recorder = get_recorder()
        recorder.touch(sub)
        if sub.state.is_final:
            if self.parent_flow is not None:
                self.parent_flow.unfinished.pop(sub.id, None)
            else:  # parent flow in another process (a process-pool task): write it now
                recorder.flush()

    def close(self) -> None:
        """Leave the run's context; stop its runner; restore signal handling."""
        if self._tokens is not None:
            flow_token, task_token = self._tokens
            task_run_var.reset(task_token)
            flow_run_var.reset(flow_token)
            self._tokens = None
        lifecycle.unregister(self)
        if self._forget_cancel is not None:
            self._forget_cancel()
            self._forget_cancel = None
        if lifecycle.pid != self.pid:
            return
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self.ctx is not None:
            ending = self.final or self._ending
            interrupted = ending is None or ending.type is S.CANCELLED
            self.ctx.task_runner.shutdown(wait=not interrupted)
            if ending is not None and ending.type is S.CANCELLED:
                self.ctx.task_runner.join_interrupted()

    def crash_at_exit(self) -> None:
        """The interpreter exits while this run still runs (it ran in a daemon thread)."""
        self.interrupted(RuntimeError("the process exited while the flow run was running"))

    def outcome(self, return_state: bool) -> Any:
        """The final state, or the flow's value (raising its exception if it failed)."""
        final = self.final or self._ending
        assert final is not None
        return final if return_state else state_result(final)


def _install_sigterm() -> Any:
    # Only in the main thread and only over the default action: a handler the
    # application installed itself is left alone.
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _on_sigterm)
    return signal.SIG_DFL


def _on_sigterm(signum: int, frame: Any) -> None:
    raise TerminationSignal(128 + signum)
