"""What is running right now: the flow run and task run of the current code.

Two context variables carry a :class:`FlowRunContext` and a :class:`TaskRunContext`.
Context variables follow ``await`` and are copied into worker threads when a task
is submitted, so code inside a flow or task always finds its own run, whichever
thread or event loop runs it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from headway._engine.tracking import TaskRunTracker
    from headway.client.base import Client
    from headway.core.models import LogRecord
    from headway.flows import Flow
    from headway.futures import TaskFuture
    from headway.task_runners import TaskRunner
    from headway.tasks import Task


@dataclass(eq=False)
class FlowRunContext:
    """The flow run the current code belongs to."""

    flow: Flow[..., Any]
    flow_run_id: str
    flow_run_name: str
    client: Client
    task_runner: TaskRunner
    log_prints: bool
    #: Set when the run is interrupted: waiting tasks stop waiting, queued ones never start.
    cancel_event: threading.Event = field(default_factory=threading.Event)
    #: Task runs of this flow run not yet in a final state (cancelled on interrupt).
    unfinished: dict[str, TaskRunTracker] = field(default_factory=dict)
    #: Submitted task runs not done yet, by id: the flow run waits for them before
    #: it ends. Each future removes itself when done, so a long flow run does not
    #: keep every result alive.
    futures: dict[str, TaskFuture[Any]] = field(default_factory=dict)
    #: Per task: the numbers of its runs (``add-0``, ``add-1``, ...); a counter's
    #: ``next`` is atomic, so tasks submitting tasks from many threads never share one.
    name_counts: dict[str, itertools.count[int]] = field(default_factory=dict)
    parent: FlowRunContext | None = None

    def next_task_run_name(self, task_name: str) -> str:
        """``<task>-<n>``: numbered per task within this flow run."""
        counter = self.name_counts.get(task_name)
        if counter is None:
            counter = self.name_counts.setdefault(task_name, itertools.count())
        return f"{task_name}-{next(counter)}"


@dataclass(eq=False)
class TaskRunContext:
    """The task run the current code belongs to."""

    task: Task[..., Any]
    task_run_id: str
    task_run_name: str
    flow_run_id: str | None
    log_prints: bool
    client: Client | None
    #: Where this run's log lines go; None: the process's recorder (a process-pool
    #: worker collects them instead and the parent records them).
    log_sink: Callable[[Client | None, LogRecord], None] | None = None


flow_run_var: ContextVar[FlowRunContext | None] = ContextVar("headway_flow_run", default=None)
task_run_var: ContextVar[TaskRunContext | None] = ContextVar("headway_task_run", default=None)


#: Tags added by enclosing ``with tags(...)`` blocks, in the order first given.
tags_var: ContextVar[tuple[str, ...]] = ContextVar("headway_tags", default=())


@contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add tags to the flow runs and task runs started inside the block.

    Tags add up: nested blocks, a task's own ``tags=`` and the blocks around its
    flow's call all count, and a task run's tags are what its tag concurrency
    limits apply to (``headway concurrency-limit create TAG N``). Yields the
    tags now in force. Like every context variable, they follow ``await`` and
    are copied into the threads that run submitted tasks.
    """
    from headway.exceptions import ValidationError

    for tag in new_tags:
        if not isinstance(tag, str) or not tag:
            raise ValidationError(f"tags must be non-empty strings, got {tag!r}")
    current = tuple(dict.fromkeys((*tags_var.get(), *new_tags)))
    token = tags_var.set(current)
    try:
        yield set(current)
    finally:
        tags_var.reset(token)


def current_tags() -> tuple[str, ...]:
    """The tags of enclosing ``with tags(...)`` blocks (empty outside any)."""
    return tags_var.get()


def get_flow_run_context() -> FlowRunContext | None:
    """The current flow run, or None outside flows."""
    return flow_run_var.get()


def get_task_run_context() -> TaskRunContext | None:
    """The current task run, or None outside tasks."""
    return task_run_var.get()


def get_run_context() -> TaskRunContext | FlowRunContext | None:
    """The innermost run: the task run if code runs in a task, else the flow run."""
    return task_run_var.get() or flow_run_var.get()


__all__ = [
    "FlowRunContext",
    "TaskRunContext",
    "current_tags",
    "get_flow_run_context",
    "get_run_context",
    "get_task_run_context",
    "tags",
]
