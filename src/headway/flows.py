"""``@flow``: a function whose every call is a recorded flow run.

Calling a flow runs it: the run is recorded (PENDING, RUNNING, then COMPLETED,
FAILED, CANCELLED or CRASHED), its tasks run on its task runner, and the call
returns the function's value or raises its exception. ``return_state=True``
returns the final state instead (``state.result()`` gives the value).

An ``async def`` flow returns a coroutine, exactly as the undecorated function
would: ``await my_flow()`` in async code, ``asyncio.run(my_flow())`` from sync
code. A flow called inside another flow (or inside a task) is a subflow: a
child flow run whose ``parent_task_run_id`` is a task run of the parent that
mirrors the child's states.

Arguments are bound to the signature before anything is recorded: a call that
Python would reject raises ``TypeError`` and leaves no run behind. Parameters
are recorded as JSON; values JSON cannot hold are recorded as their ``repr``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from headway._engine.flow_drivers import run_flow_async, run_flow_sync
from headway.exceptions import ValidationError
from headway.task_runners import TaskRunner
from headway.tasks import (
    RetryDelay,
    RunName,
    check_name,
    check_run_name,
    check_run_options,
    resolve_run_name,
    retry_delay_for,
)

if TYPE_CHECKING:
    from headway.deployments.runner_deployment import RunnerDeployment

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A function whose calls are recorded flow runs. Made by :func:`flow`."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelay = 0,
        timeout_seconds: float | None = None,
        task_runner: TaskRunner | None = None,
        log_prints: bool | None = None,
        flow_run_name: RunName | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        check_run_options(retries, retry_delay_seconds, timeout_seconds)
        check_run_name(flow_run_name, "flow_run_name")
        if task_runner is not None and (
            isinstance(task_runner, type) or not isinstance(task_runner, TaskRunner)
        ):
            raise ValidationError(
                "task_runner must be a task runner instance, e.g. ThreadPoolTaskRunner(8),"
                f" got {task_runner!r}"
            )
        self.fn = fn
        self.name: str = check_name(
            name or str(getattr(fn, "__name__", type(fn).__name__)).replace("_", "-"), "flow"
        )
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = timeout_seconds
        self.task_runner = task_runner
        self.log_prints = log_prints
        self.flow_run_name = flow_run_name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        module = getattr(fn, "__module__", None) or "__main__"
        self.key = f"{module}.{getattr(fn, '__qualname__', self.name)}"[:400]
        functools.update_wrapper(self, fn)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based)."""
        return retry_delay_for(self.retry_delay_seconds, attempt)

    def run_name(self, parameters: dict[str, Any]) -> str | None:
        """The name ``flow_run_name`` gives a run with these parameters (None: generated)."""
        if self.flow_run_name is None:
            return None
        return resolve_run_name(self.flow_run_name, parameters, "flow_run_name")

    def with_options(self, **changes: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed."""
        options: dict[str, Any] = {
            "name": self.name,
            "retries": self.retries,
            "retry_delay_seconds": self.retry_delay_seconds,
            "timeout_seconds": self.timeout_seconds,
            "task_runner": self.task_runner,
            "log_prints": self.log_prints,
            "flow_run_name": self.flow_run_name,
        }
        unknown = set(changes) - set(options)
        if unknown:
            raise TypeError(f"unknown flow option(s): {', '.join(sorted(unknown))}")
        options.update(changes)
        return Flow(self.fn, **options)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the flow; its return value (``return_state=True``: its final state)."""
        return_state = bool(kwargs.pop("return_state", False))
        if self.is_async:
            return run_flow_async(self, args, kwargs, return_state)  # type: ignore[return-value]
        result: R = run_flow_sync(self, args, kwargs, return_state)
        return result

    def serve(self, name: str, **options: Any) -> None:
        """Register the deployment ``<flow-name>/<name>`` and run it in this process.

        Blocks until Ctrl-C or SIGTERM. Options: ``cron`` / ``interval`` / ``rrule``
        / ``schedules``, ``parameters``, ``concurrency_limit`` (an int or a
        ``ConcurrencyLimitConfig``), ``tags``, ``paused``, ``limit``. See
        :func:`headway.deployments.serve`.
        """
        # Loaded when a flow is served or deployed, never by one that is only
        # called: deployments bring the worker, subprocess and zoneinfo (~70 ms
        # of a cold start). (headway.deployments imports this module: it is
        # above it.)
        from headway.deployments import serve

        serve(self, name=name, **options)

    def to_deployment(self, name: str, **options: Any) -> RunnerDeployment:
        """A deployment of this flow, checked now and registered when served or applied.

        ``headway.serve(a.to_deployment("x"), b.to_deployment("y", cron=...))``
        serves several from one process; ``.apply()`` registers one. Options are
        those of :meth:`serve`, plus ``work_pool_name`` / ``work_queue_name``.
        """
        from headway.deployments.runner_deployment import RunnerDeployment

        return RunnerDeployment.from_flow(self, name, **options)

    def deploy(self, name: str, work_pool_name: str, **options: Any) -> Any:
        """Register the deployment ``<flow-name>/<name>`` for the workers of a pool.

        Returns the deployment. See :func:`headway.deployments.deploy`.
        """
        from headway.deployments import deploy  # see serve()

        return deploy(self, name=name, work_pool_name=work_pool_name, **options)

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    timeout_seconds: float | None = None,
    task_runner: TaskRunner | None = None,
    log_prints: bool | None = None,
    flow_run_name: RunName | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    timeout_seconds: float | None = None,
    task_runner: TaskRunner | None = None,
    log_prints: bool | None = None,
    flow_run_name: RunName | None = None,
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Make a function a flow: ``@flow`` or ``@flow(retries=1, task_runner=...)``.

    Options: ``name`` (default: the function's name, ``_`` as ``-``),
    ``retries`` and ``retry_delay_seconds``, ``timeout_seconds`` (the run fails
    with ``TaskRunTimeout``), ``task_runner`` (default: a
    ``ThreadPoolTaskRunner()`` per run), ``log_prints`` (record ``print()``;
    default ``HEADWAY_LOG_PRINTS``), ``flow_run_name`` (a format string over the
    run's parameters, or a callable returning the name; default: generated).
    """
    options: dict[str, Any] = {
        "name": name,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "timeout_seconds": timeout_seconds,
        "task_runner": task_runner,
        "log_prints": log_prints,
        "flow_run_name": flow_run_name,
    }
    if fn is None:
        return lambda f: Flow(f, **options)
    return Flow(fn, **options)


__all__ = ["Flow", "flow"]
