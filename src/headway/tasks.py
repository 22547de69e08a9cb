"""``@task``: a function whose every call is a recorded task run.

* ``my_task(x)`` runs it here and now and returns its value (or raises).
  An ``async def`` task returns a coroutine, as the undecorated function would.
* ``my_task.submit(x)`` hands it to the flow run's task runner and returns a
  :class:`~headway.futures.TaskFuture`; ``my_task.map([1, 2, 3])`` submits one
  run per item and returns a :class:`~headway.futures.FutureList`.
* Futures passed as arguments (also inside lists, tuples, dicts and sets) are
  replaced by their results; ``wait_for=[...]`` waits for runs whose results
  are not needed. A run whose upstream did not complete does not start: it ends
  CANCELLED (``UpstreamFailed``) and its result raises ``RunCancelled``.

Outside a flow a task still runs and is recorded: a task run with no flow run,
written to the store when it ends. ``.submit()`` outside a flow uses a shared
:class:`~headway.task_runners.ThreadPoolTaskRunner`.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from headway._engine.task_call import create_call
from headway._engine.task_engine import run_task_async, run_task_sync
from headway._engine.tracking import state_result
from headway._runner_calls import PreparedParameters, takes_parameters
from headway.context import current_tags
from headway.exceptions import ValidationError
from headway.futures import FutureList, TaskFuture
from headway.task_runners import TaskRunner, ThreadPoolTaskRunner

P = ParamSpec("P")
R = TypeVar("R")

RetryDelay = float | int | Sequence[float | int]
#: A run name: a format string over the run's parameters (``"{name}-{day}"``), or a
#: callable returning one (called with ``parameters=`` when it takes that argument).
RunName = str | Callable[..., str]


def check_run_name(value: object, option: str) -> None:
    """``task_run_name`` / ``flow_run_name``: None, a string or a callable (TypeError else)."""
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TypeError(
            f"Expected string or callable for {option!r}; got {type(value).__name__} instead."
        )


def resolve_run_name(value: RunName, parameters: Mapping[str, Any], option: str) -> str:
    """The name a run gets from ``task_run_name`` / ``flow_run_name`` and its parameters."""
    check_run_name(value, option)
    if isinstance(value, str):
        try:
            return check_run_name_text(value.format(**parameters), option)
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise ValidationError(
                f"cannot fill {option} {value!r} from the run's parameters: {exc!r}"
            ) from None
    try:
        takes_parameters = "parameters" in inspect.signature(value).parameters
    except (TypeError, ValueError):
        takes_parameters = False
    name = value(parameters=dict(parameters)) if takes_parameters else value()
    if not isinstance(name, str):
        raise TypeError(
            f"Callable {value} for {option!r} returned type {type(name).__name__}"
            " but a string is required."
        )
    return check_run_name_text(name, option)


def check_run_name_text(name: str, option: str) -> str:
    """A resolved run name the store can keep: 1 to 200 characters."""
    if not name.strip() or len(name) > 200:
        raise ValidationError(f"{option} gave {name!r}; a run name is 1 to 200 characters")
    return name


def bound_parameters(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults filled in (what a run name formats)."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class unmapped:  # lower case: reads like a function at call sites, map(x, unmapped(y))
    """Wrap an argument of ``task.map()`` that every run gets whole, not one item of."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


#: Longest flow or task name: the store keeps names in 200 characters, and a task
#: run's name adds ``-<n>`` to its task's.
NAME_MAX = 190


def check_name(name: str, kind: str) -> str:
    """``name`` if it is a usable flow or task name."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"a {kind} name must be a non-empty string, got {name!r}")
    if len(name) > NAME_MAX:
        raise ValidationError(f"a {kind} name is at most {NAME_MAX} characters, got {len(name)}")
    return name


def check_run_options(
    retries: int,
    retry_delay_seconds: RetryDelay,
    timeout_seconds: float | None,
) -> None:
    """Reject invalid retry and timeout options with a clear message."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValidationError(f"retries must be a whole number >= 0, got {retries!r}")
    delays = (
        list(retry_delay_seconds)
        if isinstance(retry_delay_seconds, list | tuple)
        else [retry_delay_seconds]
    )
    for delay in delays:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValidationError(
                f"retry_delay_seconds must be a number >= 0 or a list of them, got {delay!r}"
            )
    if timeout_seconds is not None and (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, int | float)
        or timeout_seconds <= 0
    ):
        raise ValidationError(f"timeout_seconds must be > 0, got {timeout_seconds!r}")


def retry_delay_for(retry_delay_seconds: RetryDelay, attempt: int) -> float:
    """The delay after failed attempt number ``attempt`` (1-based); a list's last repeats."""
    if isinstance(retry_delay_seconds, list | tuple):
        if not retry_delay_seconds:
            return 0.0
        return float(retry_delay_seconds[min(attempt, len(retry_delay_seconds)) - 1])
    assert isinstance(retry_delay_seconds, int | float)
    return float(retry_delay_seconds)


class Task(Generic[P, R]):
    """A function whose calls are recorded task runs. Made by :func:`task`."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelay = 0,
        timeout_seconds: float | None = None,
        tags: Iterable[str] | None = None,
        log_prints: bool | None = None,
        task_run_name: RunName | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task needs a function, got {fn!r}")
        check_run_options(retries, retry_delay_seconds, timeout_seconds)
        check_run_name(task_run_name, "task_run_name")
        if isinstance(tags, str) or (
            tags is not None and not all(isinstance(t, str) and t for t in tags)
        ):
            raise ValidationError(f"tags must be a list of non-empty strings, got {tags!r}")
        self.fn = fn
        self.name: str = check_name(name or str(getattr(fn, "__name__", type(fn).__name__)), "task")
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.tags: tuple[str, ...] = tuple(dict.fromkeys(tags)) if tags else ()
        self.log_prints = log_prints
        self.task_run_name = task_run_name
        self.is_async = inspect.iscoroutinefunction(fn)
        module = getattr(fn, "__module__", None) or "__main__"
        self.task_key = f"{module}.{getattr(fn, '__qualname__', self.name)}"[:400]
        self._counter = itertools.count()
        functools.update_wrapper(self, fn)

    def next_run_name(self) -> str:
        """A run name for a run outside flows: ``<task>-<n>`` within this process."""
        return f"{self.name}-{next(self._counter)}"

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return retry_delay_for(self.retry_delay_seconds, attempt)

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A copy of this task with some options changed (name, retries, tags, ...)."""
        options = self._options()
        unknown = set(changes) - set(options)
        if unknown:
            raise TypeError(f"unknown task option(s): {', '.join(sorted(unknown))}")
        options.update(changes)
        return Task(self.fn, **options)

    def _options(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "tags": self.tags,
            "log_prints": self.log_prints,
            "task_run_name": self.task_run_name,
        }

    def _for_call(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Task[P, R], str | None]:
        """The task a call runs as (with the tags of enclosing ``tags()``) and its run name."""
        task: Task[P, R] = self
        extra = current_tags()
        if extra and not set(extra) <= set(self.tags):
            task = Task(self.fn, **{**self._options(), "tags": (*self.tags, *extra)})
            task._counter = self._counter  # run names keep counting per task
        name = None
        if self.task_run_name is not None:
            parameters = bound_parameters(self.fn, args, kwargs)
            name = resolve_run_name(self.task_run_name, parameters, "task_run_name")
        return task, name

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task here; its return value (``return_state=True``: its final state).

        ``wait_for=[futures]`` waits for those runs first (and does not run if one
        of them did not complete), as with :meth:`submit`.
        """
        return_state = False
        wait_for: list[TaskFuture[Any]] | None = None
        if kwargs:
            return_state = bool(kwargs.pop("return_state", False))
            waits: Any = kwargs.pop("wait_for", None)
            wait_for = list(waits) if waits else None
        task, name = self._for_call(args, kwargs)
        if self.is_async:
            return task._call_async(args, kwargs, return_state, wait_for, name)  # type: ignore[return-value]
        state = run_task_sync(create_call(task, args, kwargs, wait_for, queued=False, name=name))
        if return_state:
            return state  # type: ignore[return-value]
        result: R = state_result(state)
        return result

    async def _call_async(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        return_state: bool,
        wait_for: list[TaskFuture[Any]] | None,
        name: str | None = None,
    ) -> Any:
        state = await run_task_async(
            create_call(self, args, kwargs, wait_for, queued=False, name=name)
        )
        return state if return_state else state_result(state)

    def submit(
        self,
        *args: Any,
        wait_for: Iterable[TaskFuture[Any]] | None = None,
        **kwargs: Any,
    ) -> TaskFuture[R]:
        """Run the task on the flow run's task runner; a future of its result."""
        task, name = self._for_call(args, kwargs)
        call = create_call(task, args, kwargs, list(wait_for) if wait_for else None, name=name)
        flow_ctx = call.flow_ctx
        if flow_ctx is None:
            future: TaskFuture[R] = default_task_runner().submit(call)
            _outside_futures.append(future)
            future.add_done_callback(_forget_outside_future)
            return future
        runner = flow_ctx.task_runner
        if takes_parameters(runner):
            # Prefect's interface: the prepared run rides along in the parameters.
            prepared = PreparedParameters(call, bound_parameters(self.fn, args, kwargs))
            submit: Callable[..., TaskFuture[R]] = runner.submit
            future = submit(task, prepared, call.wait_for)
        else:
            future = runner.submit(call)
        unfinished = flow_ctx.futures
        unfinished[future.task_run_id] = future
        future._owner = unfinished
        if future.done():  # it finished before it knew where to remove itself from
            unfinished.pop(future.task_run_id, None)
        return future

    def map(
        self,
        *args: Any,
        wait_for: Iterable[TaskFuture[Any]] | None = None,
        **kwargs: Any,
    ) -> FutureList[R]:
        """Submit one run per item of the iterable arguments (zipped; equal lengths).

        Arguments wrapped in :class:`unmapped`, and strings, bytes and mappings,
        are passed whole to every run. A future argument is waited for and its
        result mapped over.
        """
        waits = list(wait_for) if wait_for else None
        lengths: dict[str, int] = {}

        def prepare(key: str, value: Any) -> tuple[bool, Any]:
            if isinstance(value, unmapped):
                return False, value.value
            if isinstance(value, TaskFuture):
                value = value.result()
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
                return False, value
            items = list(value)
            lengths[key] = len(items)
            return True, items

        positional = [prepare(f"argument {i}", v) for i, v in enumerate(args)]
        named = {k: prepare(repr(k), v) for k, v in kwargs.items()}
        if not lengths:
            raise ValidationError(
                f"{self.name}.map() needs at least one iterable argument to map over"
            )
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise ValidationError(f"{self.name}.map() got iterables of different lengths ({shown})")
        count = next(iter(lengths.values()))
        futures: FutureList[R] = FutureList()
        for i in range(count):
            call_args = [v[i] if mapped else v for mapped, v in positional]
            call_kwargs = {k: (v[i] if mapped else v) for k, (mapped, v) in named.items()}
            futures.append(self.submit(*call_args, wait_for=waits, **call_kwargs))
        return futures

    # -- pickling (process pools) --------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", None)
        if not module or not qualname or "<locals>" in qualname:
            raise TypeError(
                f"task {self.name!r} cannot be sent to another process: define it at"
                " module level so it can be imported by name"
            )
        return (_rebuild_task, (module, qualname, self._options()))

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


def _rebuild_task(module: str, qualname: str, options: dict[str, Any]) -> Task[..., Any]:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    fn = target.fn if isinstance(target, Task) else target
    return Task(fn, **options)


_default_runner: TaskRunner | None = None
_default_runner_lock = threading.Lock()
# Submitted outside flows: a clean exit waits for them, as ThreadPoolExecutor does,
# so a submitted run is never left PENDING or RUNNING by the interpreter exiting.
_outside_futures: list[TaskFuture[Any]] = []


def default_task_runner() -> TaskRunner:
    """The shared runner of ``.submit()`` calls made outside flows."""
    global _default_runner
    with _default_runner_lock:
        if _default_runner is None:
            runner = ThreadPoolTaskRunner()
            runner.start()
            _default_runner = runner
            atexit.register(_wait_for_outside_futures)
        return _default_runner


def _forget_outside_future(future: TaskFuture[Any]) -> None:
    try:
        _outside_futures.remove(future)
    except ValueError:
        pass


def _forget_after_fork() -> None:
    # The child has none of the parent's worker threads: never wait on their futures.
    global _default_runner, _default_runner_lock
    _outside_futures.clear()
    _default_runner = None
    _default_runner_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _wait_for_outside_futures() -> None:
    while _outside_futures:
        _outside_futures.pop().wait()


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] | None = None,
    log_prints: bool | None = None,
    task_run_name: RunName | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] | None = None,
    log_prints: bool | None = None,
    task_run_name: RunName | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a task: ``@task`` or ``@task(retries=2, tags=["db"])``.

    Options: ``name`` (default: the function's name), ``retries`` and
    ``retry_delay_seconds`` (a number, or a list: one delay per retry, the last
    repeating), ``timeout_seconds`` (the run fails with ``TaskRunTimeout``),
    ``tags`` (each tag's concurrency limit, if one exists, applies to the run),
    ``log_prints`` (record ``print()``; default: the flow's setting),
    ``task_run_name`` (a format string over the call's arguments, such as
    ``"fetch-{day}"``, or a callable returning the name; default ``<task>-<n>``).
    """
    options: dict[str, Any] = {
        "name": name,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "timeout_seconds": timeout_seconds,
        "tags": tags,
        "log_prints": log_prints,
        "task_run_name": task_run_name,
    }
    if fn is None:
        return lambda f: Task(f, **options)
    return Task(fn, **options)


__all__ = ["RunName", "Task", "task", "unmapped"]
