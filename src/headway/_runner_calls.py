"""Prefect's task runner interface on headway's runners: ``submit(task, parameters, wait_for)``.

headway's runners take a prepared :class:`~headway._engine.task_call.TaskCall`
(the PENDING run, its name, tags and context, made where ``task.submit()`` was
called). Prefect's take ``(task, parameters, wait_for, dependencies)``. Both
work:

* A runner whose ``submit`` has a ``parameters`` argument is called Prefect's
  way. The call headway already prepared rides along inside ``parameters``
  (a :class:`PreparedParameters`, a plain dict of the arguments by name), so a
  custom runner that hands ``parameters`` on to ``super().submit()`` or to
  another runner runs exactly the prepared run.
* A plain dict of parameters (a runner used directly, as Prefect's tests do)
  makes a new task run from them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headway._engine.task_call import TaskCall
    from headway.futures import FutureList, TaskFuture
    from headway.task_runners import TaskRunner
    from headway.tasks import Task


class PreparedParameters(dict[str, Any]):
    """A task run's arguments by name, carrying the run headway prepared for them."""

    def __init__(self, call: TaskCall, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.call = call


_STYLE: dict[type[Any], bool] = {}


def takes_parameters(runner: TaskRunner) -> bool:
    """Whether ``runner.submit`` is Prefect's ``submit(task, parameters, ...)``."""
    cls = type(runner)
    known = _STYLE.get(cls)
    if known is None:
        from headway.task_runners import ThreadPoolTaskRunner

        if cls.submit is ThreadPoolTaskRunner.submit:
            known = False  # takes both; the prepared call is the fast path
        else:
            try:
                known = "parameters" in inspect.signature(cls.submit).parameters
            except (TypeError, ValueError):
                known = False
        _STYLE[cls] = known
    return known


def call_for(
    task: Any,
    parameters: Mapping[str, Any] | None,
    wait_for: Iterable[TaskFuture[Any]] | None,
) -> TaskCall:
    """The run to submit for Prefect's ``submit(task, parameters, wait_for)``."""
    from headway._engine.task_call import TaskCall, create_call

    if isinstance(task, TaskCall):  # headway's own form, passed positionally
        return task
    if isinstance(parameters, PreparedParameters):
        return parameters.call
    from headway.tasks import Task

    if not isinstance(task, Task):
        raise TypeError(f"submit() needs a task made with @task, got {task!r}")
    kwargs = dict(parameters or {})
    run_task, name = task._for_call((), kwargs)
    return create_call(run_task, (), kwargs, list(wait_for) if wait_for else None, name=name)


def map_parameters(
    runner: TaskRunner,
    task: Task[..., Any],
    parameters: Mapping[str, Any],
    wait_for: Iterable[TaskFuture[Any]] | None = None,
) -> FutureList[Any]:
    """Prefect's ``runner.map(task, parameters)``: one submitted run per item."""
    from headway.exceptions import ValidationError
    from headway.futures import FutureList, TaskFuture
    from headway.tasks import unmapped

    mapped: dict[str, list[Any]] = {}
    static: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, unmapped):
            static[key] = value.value
            continue
        if isinstance(value, TaskFuture):
            value = value.result()
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            static[key] = value
        else:
            mapped[key] = list(value)
    if not mapped:
        raise ValidationError(f"{task.name}: map() needs at least one iterable parameter")
    lengths = {key: len(items) for key, items in mapped.items()}
    if len(set(lengths.values())) > 1:
        raise ValidationError(f"{task.name}: map() got iterables of different lengths {lengths}")
    waits = list(wait_for) if wait_for else None
    # Called Prefect's way whatever the runner's declared form: it takes both.
    submit: Callable[..., TaskFuture[Any]] = runner.submit
    futures: FutureList[Any] = FutureList()
    for i in range(next(iter(lengths.values()))):
        one = {**static, **{key: items[i] for key, items in mapped.items()}}
        futures.append(submit(task, one, waits))
    return futures


__all__ = ["PreparedParameters", "call_for", "map_parameters", "takes_parameters"]
