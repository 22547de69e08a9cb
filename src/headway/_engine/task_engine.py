"""The task engine: one task run from PENDING to a final state.

The steps (begin an attempt, succeed, fail or retry, be interrupted) are
written once; :func:`run_task_sync` and :func:`run_task_async` are the two thin
drivers that call the task's function and sleep between retries in their own
way. A task run's states live in a :class:`TaskRunTracker` and reach the store
through the recorder (batched inside flows, written at once outside them).
The run itself, a :class:`~headway._engine.task_call.TaskCall`, is made by
:func:`~headway._engine.task_call.create_call`.

Cost matters here: a no-op task must cost tens of microseconds, so the common
path has no store round trip, no signature binding and no locks beyond a few
atomic operations. Tasks with tags pay for their slots (a store round trip).
"""

from __future__ import annotations

import time
from datetime import UTC as _UTC
from datetime import datetime
from typing import TYPE_CHECKING, Any

from headway._engine import lifecycle
from headway._engine.interrupts import (
    INTERRUPTED,
    AsyncBody,
    Body,
    TaskRunCancelled,
    cancellable,
    enclosing_interrupted,
)
from headway._engine.recorder import get_recorder
from headway._engine.task_call import Mode, TaskCall, changed
from headway._engine.tracking import (
    RunState,
    cancelled_state,
    final_state,
)
from headway.client.base import Client
from headway.concurrency._scopes import wait_for_lingering_bodies
from headway.context import TaskRunContext, task_run_var
from headway.core.states import (
    AWAITING_RETRY,
    RETRYING,
    Scheduled,
    State,
    StateType,
)
from headway.exceptions import HeadwayError, RunEnded
from headway.futures import TaskFuture, has_futures, iter_futures, resolve_futures
from headway.logging import run_logger

if TYPE_CHECKING:
    from headway.concurrency.tags import TagSlots

_now = datetime.now
_RUNNING = StateType.RUNNING
_COMPLETED = StateType.COMPLETED


# -- the steps -----------------------------------------------------------------------------
def upstream_of(call: TaskCall) -> list[TaskFuture[Any]]:
    found: list[TaskFuture[Any]] = list(call.wait_for) if call.wait_for else []
    if has_futures(call.args, call.kwargs):
        for value in call.args:
            found.extend(iter_futures(value))
        for value in call.kwargs.values():
            found.extend(iter_futures(value))
    return found


def check_upstream(call: TaskCall, upstream: list[TaskFuture[Any]]) -> State | None:
    """A final state when an upstream run did not complete; else resolve the arguments."""
    for future in upstream:
        state = future.state
        if state.type is not StateType.COMPLETED:
            message = f"upstream task run {future._tracker.name!r} ended {state.name}" + (
                f": {state.message}" if state.message else ""
            )
            call.tracker.set_state(cancelled_state(message, "UpstreamFailed"))
            changed(call)
            return call.tracker.state
    if upstream and has_futures(call.args, call.kwargs):
        call.args = tuple(resolve_futures(a) for a in call.args)
        call.kwargs = {k: resolve_futures(v) for k, v in call.kwargs.items()}
    return None


def cancelled_if_flow_cancelled(call: TaskCall) -> State | None:
    flow_ctx = call.flow_ctx
    if flow_ctx is not None and flow_ctx.cancel_event.is_set():
        call.tracker.set_state(cancelled_state("the flow run was cancelled before it started"))
        changed(call)
        return call.tracker.state
    return None


def _begin_attempt(call: TaskCall) -> bool:
    """Enter RUNNING (``Retrying`` after the first attempt); False if the run already ended."""
    tracker = call.tracker
    ok = tracker.set_state(
        State(_RUNNING, RETRYING if tracker.run_count else "Running", _now(_UTC))
    )
    changed(call)
    return ok


def _succeeded(call: TaskCall, value: Any) -> State:
    tracker = call.tracker
    tracker.set_state(RunState(_COMPLETED, "Completed", _now(_UTC), outcome=value))
    changed(call)
    return tracker.state


def _failed(call: TaskCall, exc: BaseException) -> float | None:
    """Record a failed attempt: the retry delay if it will be retried, else None (FAILED)."""
    task = call.task
    tracker = call.tracker
    message = f"{type(exc).__name__}: {exc}"
    attempt = tracker.run_count
    logger = _logger(call)
    if attempt <= task.retries and not tracker.state.is_final:
        delay = task.retry_delay(attempt)
        tracker.set_state(Scheduled(AWAITING_RETRY, message=message))
        changed(call)
        logger.warning(
            "Attempt %d of %d failed (%s); retrying in %g s",
            attempt,
            task.retries + 1,
            message,
            delay,
        )
        return delay
    tracker.set_state(final_state(StateType.FAILED, message=message, error=exc))
    changed(call)
    logger.error("Finished in state Failed: %s", message, exc_info=traceback_once(exc))
    return None


def interrupted(call: TaskCall, exc: BaseException) -> None:
    if lifecycle.pid != call.pid:  # a forked child unwinding its parent's task: not its run
        return
    tracker = call.tracker
    if isinstance(exc, TaskRunCancelled):
        # The flow that called it (in this thread) was cancelled, the task with it.
        tracker.set_state(cancelled_state("interrupted: its flow run was cancelled", INTERRUPTED))
    elif isinstance(exc, KeyboardInterrupt | SystemExit) or type(exc).__name__ == "CancelledError":
        tracker.set_state(cancelled_state(f"interrupted ({type(exc).__name__})"))
    else:
        message = f"{type(exc).__name__}: {exc}"
        tracker.set_state(final_state(StateType.CRASHED, message=message, error=exc))
    changed(call)


def finish(call: TaskCall) -> None:
    flow_ctx = call.flow_ctx
    if flow_ctx is not None:
        flow_ctx.unfinished.pop(call.tracker.id, None)
        if call.tracker.state.name == INTERRUPTED:
            # Interrupted where its flow run was found cancelled (another process,
            # a Dask worker): no more of the run's tasks start, and it ends CANCELLED.
            flow_ctx.cancel_event.set()
    elif call.mode is Mode.DIRECT:
        recorder = get_recorder()
        recorder.touch(call.tracker)
        recorder.flush()


def _logger(call: TaskCall) -> Any:
    tracker = call.tracker
    return run_logger(
        flow_run_id=tracker.flow_run_id,
        task_run_id=tracker.id,
        label=f"Task run {tracker.name!r}",
        client=call.client,
        sink=call.log_sink,
    )


def _context(call: TaskCall) -> TaskRunContext:
    tracker = call.tracker
    return TaskRunContext(
        call.task,
        tracker.id,
        tracker.name,
        tracker.flow_run_id,
        call.log_prints,
        call.client,
        call.log_sink,
    )


def _hold_slots(call: TaskCall) -> TagSlots:
    """The slot context of a task with tags: the PENDING run is in the store first."""
    # Loaded for tasks with tags only: it brings asyncio (~100 ms of a cold start).
    from headway.concurrency.tags import hold_tag_slots

    if call.mode is not Mode.COLLECT:
        recorder = get_recorder()
        recorder.touch(call.tracker)
        recorder.flush()
    return hold_tag_slots(
        call.client,
        call.task.tags,
        task_run_id=call.tracker.id,
        flow_run_id=call.tracker.flow_run_id,
    )


def _slots_failed(call: TaskCall, exc: Exception) -> State:
    """The run could not get (or give back) its tags' slots."""
    tracker = call.tracker
    if tracker.state.is_final:  # the run ended; giving the slots back failed
        _logger(call).warning("Could not release concurrency slots: %s", exc)
        return tracker.state
    cancelled = cancelled_if_flow_cancelled(call)
    if cancelled is not None:
        return cancelled
    if isinstance(exc, RunEnded):
        # Its flow run was cancelled (or ended) while it waited, maybe in another
        # process (a remote Dask worker): it never starts.
        tracker.set_state(cancelled_state(f"never started: {exc}"))
        changed(call)
        return tracker.state
    message = f"could not acquire concurrency slots for tags {list(call.task.tags)}: {exc}"
    tracker.set_state(final_state(StateType.FAILED, message=message, error=exc))
    changed(call)
    _logger(call).error("Finished in state Failed: %s", message)
    return tracker.state


def ended_after_grant(call: TaskCall, slots: TagSlots) -> State | None:
    """CANCELLED when the flow run was cancelled as the slots were granted; else None.

    The store refuses slots to a task run of a cancelled run, but a grant that
    committed just before the cancel did is only seen here, once: the run then
    never starts, and leaving the ``with`` gives the slots back.
    """
    cancelled = cancelled_if_flow_cancelled(call)
    # (getattr: a test may stand in for the slots with a bare context manager.)
    if cancelled is not None or getattr(slots, "held", None) is None:
        return cancelled
    return cancelled_if_flow_run_ended(call, slots.client)


def cancelled_if_flow_run_ended(call: TaskCall, client: Client | None) -> State | None:
    """CANCELLED when the store says the run's flow run ended or is being cancelled.

    For a task run far from its flow's process (a Dask worker at an address),
    where no cancel event of the flow reaches: one read of the flow run.
    """
    flow_run_id = call.tracker.flow_run_id
    if flow_run_id is None or client is None:
        return None
    try:
        flow_state = client.read_flow_run(flow_run_id).state
    except HeadwayError:  # unknown here (a flow run of another store), or unreachable
        return None
    if not (flow_state.is_final or flow_state.type is StateType.CANCELLING):
        return None
    call.tracker.set_state(
        cancelled_state(f"never started: its flow run is {flow_state.type.value}")
    )
    changed(call)
    return call.tracker.state


def _crash(call: TaskCall, exc: BaseException) -> State:
    # A bug in the engine itself: never leave the run (or its waiters) hanging.
    tracker = call.tracker
    if not tracker.state.is_final and lifecycle.pid == call.pid:
        message = f"task engine error: {type(exc).__name__}: {exc}"
        tracker.set_state(final_state(StateType.CRASHED, message=message, error=exc))
        changed(call)
    return tracker.state


def _cancel_wait(call: TaskCall, seconds: float) -> bool:
    """Sleep between attempts, and until an earlier attempt's timed-out body has
    ended (it still uses the run's tag slots); False when the flow run was
    cancelled meanwhile."""
    flow_ctx = call.flow_ctx
    if flow_ctx is None:
        time.sleep(seconds)
        wait_for_lingering_bodies()
        return True
    cancel = flow_ctx.cancel_event
    if cancel.wait(seconds) or not wait_for_lingering_bodies(cancel):
        call.tracker.set_state(cancelled_state("the flow run was cancelled during a retry delay"))
        changed(call)
        return False
    return True


# -- drivers -------------------------------------------------------------------------------
def run_task_sync(call: TaskCall) -> State:
    """Run a sync task to a final state in this thread; its final state."""
    try:
        upstream = upstream_of(call)
        for future in upstream:
            future.wait()
        state = check_upstream(call, upstream) or cancelled_if_flow_cancelled(call)
        if state is not None:
            return state
        if call.task.tags:
            try:
                slots = _hold_slots(call)
                with slots:
                    return ended_after_grant(call, slots) or _attempts_sync(call)
            except Exception as exc:  # the attempts return states: this is the slots
                return _slots_failed(call, exc)
        return _attempts_sync(call)
    except Exception as exc:
        return _crash(call, exc)
    except BaseException as exc:
        interrupted(call, exc)
        raise
    finally:
        finish(call)


def _attempts_sync(call: TaskCall) -> State:
    task = call.task
    fn = task.fn
    ctx = _context(call)
    while True:
        if not _begin_attempt(call):
            return call.tracker.state
        token = task_run_var.set(ctx)
        try:
            if task.timeout_seconds is not None:
                value = _call_with_timeout(call)
            elif call.tracker.flow_run_id is None:
                value = fn(*call.args, **call.kwargs)
            else:
                body = Body(lambda: fn(*call.args, **call.kwargs))
                with cancellable(body, call.tracker.flow_run_id, call.client):
                    value = body.run()
        except TaskRunCancelled:
            if enclosing_interrupted():  # the flow that called it was cancelled: it goes on
                raise
            return interrupted_by_cancel(call)
        except Exception as exc:
            delay = _failed(call, exc)
            if delay is None or not _cancel_wait(call, delay):
                return call.tracker.state
            continue
        finally:
            task_run_var.reset(token)
        return _succeeded(call, value)


def interrupted_by_cancel(call: TaskCall) -> State:
    """The body was interrupted because its flow run was cancelled: CANCELLED."""
    call.tracker.set_state(cancelled_state("interrupted: its flow run was cancelled", INTERRUPTED))
    changed(call)
    return call.tracker.state


def _call_with_timeout(call: TaskCall) -> Any:
    # Loaded for runs with a timeout only: it brings ctypes (to interrupt a thread).
    from headway._engine.timeouts import call_with_timeout, timeout_error

    task = call.task
    seconds = task.timeout_seconds
    assert seconds is not None
    return call_with_timeout(
        lambda: task.fn(*call.args, **call.kwargs),
        seconds,
        timeout_error("task run", call.tracker.name, seconds),
        flow_run_id=call.tracker.flow_run_id,
        client=call.client,
    )


async def run_task_async(call: TaskCall) -> State:
    """Run an async task to a final state on the running event loop; its final state."""
    try:
        upstream = upstream_of(call)
        for future in upstream:
            if not future.done():
                await future._wait_async_quietly()
        state = check_upstream(call, upstream) or cancelled_if_flow_cancelled(call)
        if state is not None:
            return state
        if call.task.tags:
            try:
                # Awaited, never blocking: a blocked loop would stall the holders too.
                slots = _hold_slots(call)
                async with slots:
                    return ended_after_grant(call, slots) or await _attempts_async(call)
            except Exception as exc:  # the attempts return states: this is the slots
                return _slots_failed(call, exc)
        return await _attempts_async(call)
    except Exception as exc:
        return _crash(call, exc)
    except BaseException as exc:  # also asyncio.CancelledError: the awaiting code was cancelled
        interrupted(call, exc)
        raise
    finally:
        finish(call)


async def _attempts_async(call: TaskCall) -> State:
    # asyncio is loaded by async tasks only: a sync program's cold start skips it.
    import asyncio

    task = call.task
    ctx = _context(call)
    while True:
        if not _begin_attempt(call):
            return call.tracker.state
        token = task_run_var.set(ctx)
        body = AsyncBody() if call.tracker.flow_run_id is not None else None
        try:
            coro = task.fn(*call.args, **call.kwargs)
            if task.timeout_seconds is not None:
                # With a timeout only (see _call_with_timeout).
                from headway._engine.timeouts import await_with_timeout, timeout_error

                seconds = task.timeout_seconds
                coro = await_with_timeout(
                    coro, seconds, timeout_error("task run", call.tracker.name, seconds)
                )
            if body is None:
                value = await coro
            else:
                with cancellable(body, call.tracker.flow_run_id, call.client), body:
                    value = await coro
        except asyncio.CancelledError:
            if body is None or not body.owns_cancel():  # (owned: taken back, handled here)
                raise
            return interrupted_by_cancel(call)
        except Exception as exc:
            delay = _failed(call, exc)
            if delay is None:
                return call.tracker.state
            await asyncio.sleep(delay)
            if cancelled_if_flow_cancelled(call) is not None:
                return call.tracker.state
            continue
        finally:
            task_run_var.reset(token)
        return _succeeded(call, value)


def run_in_thread(call: TaskCall) -> State:
    """Run a sync or async task to completion in the current (non-async) thread."""
    if call.task.is_async:
        # Async tasks only: the event loop brings asyncio.
        from headway._engine.loops import run_coro_sync

        state: State = run_coro_sync(run_task_async(call))
        return state
    return run_task_sync(call)


def traceback_once(exc: BaseException | None) -> BaseException | None:
    """``exc`` the first time its traceback is logged, then None.

    A task's error usually fails its flow too; its traceback is worth one print.
    """
    if exc is None or getattr(exc, "_headway_logged", False):
        return None
    try:
        exc._headway_logged = True  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: log it every time
        pass
    return exc


def interrupted_or_crashed(call: TaskCall, exc: BaseException) -> State:
    """Record an error raised outside the task's own code; the run's final state."""
    if isinstance(exc, Exception):
        return _crash(call, exc)
    interrupted(call, exc)
    return call.tracker.state
