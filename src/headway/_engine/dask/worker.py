"""The worker side: what runs on a Dask worker for one task run."""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import threading
from typing import TYPE_CHECKING, Any

from headway._engine.dask.payload import _Outcome, _Payload
from headway.context import task_run_var

if TYPE_CHECKING:
    from headway.client.base import Client
    from headway.settings import Settings
    from headway.tasks import Task

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
    from headway._engine.task_call import Mode, TaskCall
    from headway._engine.task_engine import cancelled_if_flow_run_ended, run_in_thread
    from headway._engine.tracking import RunState, TaskRunTracker, plain

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
        from headway.logging import capture_prints

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
        from headway._engine.tracking import NO_RESULT

        if final.outcome is not NO_RESULT:
            outcome, has_outcome = final.outcome, True
    if has_outcome and error is None and packed is not None:
        result, problem = packed, None  # pickled when the attempt returned it
    else:
        result, problem = _pickled((has_outcome, outcome, error))
    return _Outcome([plain(s) for s in tracker.states[1:]], result, problem, _address())


def _address() -> str | None:
    try:
        from distributed import get_worker

        address: str = get_worker().address
        return address
    except Exception:  # not on a Dask worker (called directly)
        return None


async def flush_records() -> None:
    """Write this process's queued task runs and logs now (``Client.run`` on a worker).

    Runs off the worker's event loop: a store round trip must not stall Dask.
    """
    import asyncio

    from headway._engine.recorder import get_recorder

    await asyncio.get_running_loop().run_in_executor(None, get_recorder().flush)


def _decode(spec: bytes) -> tuple[Task[..., Any], str, tuple[tuple[str, str], ...]]:
    cached = _specs.get(spec)
    if cached is not None:
        return cached
    import cloudpickle

    from headway.tasks import Task

    fn, options, task_key, env = cloudpickle.loads(spec)
    decoded = (Task(_packing(fn), **options), task_key, env)
    if len(_specs) >= _SPECS_KEPT:
        _specs.clear()
    _specs[spec] = decoded
    return decoded


def _adopt_env(env: tuple[tuple[str, str], ...]) -> Client:
    """Make this process's HEADWAY_* settings ``env``; the default client that follows them."""
    global _applied_env
    from headway.client.base import get_client, set_default_client

    if env == _applied_env:
        return get_client()
    with _env_lock:
        if env != _applied_env:
            for var, value in env:
                if value:
                    os.environ[var] = value
                else:
                    os.environ.pop(var, None)
            from headway.settings import get_settings

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
        import cloudpickle

        return cloudpickle.dumps(result), None
    except Exception as exc:
        what = "exception" if result[2] is not None else "return value"
        return b"", f"the task's {what} cannot be sent back from the Dask worker: {exc}"
