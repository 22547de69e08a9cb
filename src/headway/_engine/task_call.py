"""A task run to perform: its :class:`TaskCall`, its id, and where its records go.

:func:`create_call` makes the PENDING run for a call of a task in the current
run context (inside a flow run, under a parent task run, or on its own); the
task engine (:mod:`headway._engine.task_engine`) then drives it to a final
state, and the runners hand it to their workers. :func:`changed` is how each
step tells the recorder that the run has new states for the store.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC as _UTC
from datetime import datetime
from random import getrandbits as _getrandbits
from time import time_ns as _time_ns
from typing import TYPE_CHECKING, Any

from headway._engine import lifecycle
from headway._engine import recorder as _recorder_module
from headway._engine.recorder import get_recorder
from headway._engine.tracking import TaskRunTracker
from headway.client.base import Client, get_client
from headway.context import FlowRunContext, flow_run_var, task_run_var
from headway.core.states import State, StateType
from headway.futures import TaskFuture
from headway.logging import Sink, capture_prints

if TYPE_CHECKING:
    from headway.tasks import Task


class Mode(enum.Enum):
    """Where a task run's records go."""

    BATCHED = 1  # inside a flow run: the recorder writes them in batches
    DIRECT = 2  # outside flows: written when the run ends
    COLLECT = 3  # in a process-pool worker: returned to the parent, which records them


class TaskCall:
    """One task run to perform: the task, its arguments, and where it belongs."""

    __slots__ = (
        "args",
        "client",
        "flow_ctx",
        "kwargs",
        "log_prints",
        "log_sink",
        "mode",
        "pid",
        "recorder",
        "task",
        "tracker",
        "wait_for",
    )

    def __init__(
        self,
        task: Task[..., Any],
        tracker: TaskRunTracker,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wait_for: Sequence[TaskFuture[Any]] | None,
        flow_ctx: FlowRunContext | None,
        log_prints: bool,
        mode: Mode,
        client: Client | None,
        log_sink: Sink | None = None,
    ) -> None:
        self.task = task
        self.tracker = tracker
        self.args = args
        self.kwargs = kwargs
        self.wait_for = wait_for
        self.flow_ctx = flow_ctx
        self.log_prints = log_prints
        self.mode = mode
        self.client = client
        self.log_sink = log_sink
        self.recorder = (
            (_recorder_module._recorder or get_recorder()) if mode is Mode.BATCHED else None
        )
        self.pid = lifecycle.pid


_now = datetime.now
_PENDING = StateType.PENDING
_UUID7_BITS = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 4122 variant
_LOW_62 = (1 << 62) - 1


def new_run_id() -> str:
    """A new run id: a UUID (version 7 layout) that sorts by creation time.

    Time-ordered ids put each new run at the end of the store's indexes, so
    recording stays fast as the store grows (random ids scatter inserts over
    the whole index). 48 bits of milliseconds and 74 random bits from
    ``random`` (reseeded in forked children): ids need to be unique, not
    unguessable, and this costs half of ``str(uuid.uuid4())``, per task run.
    """
    r = _getrandbits(74)
    h = "%032x" % (  # %-format: measurably faster than format() here
        (_time_ns() // 1_000_000) << 80 | _UUID7_BITS | (r >> 62) << 64 | (r & _LOW_62)
    )
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def create_call(
    task: Task[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: Sequence[TaskFuture[Any]] | None = None,
    *,
    queued: bool = True,
    name: str | None = None,
) -> TaskCall:
    """Make a PENDING task run for ``task(*args, **kwargs)`` in the current run context.

    ``queued`` runs (submitted) are handed to the recorder at once, so a run
    waiting for a worker shows as PENDING; a direct call runs at once and is
    handed over when it starts. ``name`` (from ``task_run_name``) replaces the
    numbered ``<task>-<n>``.
    """
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        client: Client = flow_ctx.client
        flow_run_id: str | None = flow_ctx.flow_run_id
        name = name or flow_ctx.next_task_run_name(task.name)
        log_prints = flow_ctx.log_prints if task.log_prints is None else task.log_prints
        mode = Mode.BATCHED
    else:
        parent = task_run_var.get()
        client = parent.client if parent is not None and parent.client else get_client()
        flow_run_id = parent.flow_run_id if parent is not None else None
        name = name or task.next_run_name()
        if task.log_prints is not None:
            log_prints = task.log_prints
        elif parent is not None:
            log_prints = parent.log_prints
        else:
            log_prints = client.settings.log_prints
        mode = Mode.DIRECT
    tracker = TaskRunTracker(
        new_run_id(),
        flow_run_id,
        name,
        task.task_key,
        task.tags,
        client,
        State(_PENDING, "Pending", _now(_UTC)),
    )
    if log_prints:
        capture_prints()
    call = TaskCall(task, tracker, args, kwargs, wait_for, flow_ctx, log_prints, mode, client)
    if flow_ctx is not None:
        flow_ctx.unfinished[tracker.id] = tracker
        if queued:
            changed(call)
    return call


def changed(call: TaskCall) -> None:
    """The run has new states for the store (written in the next batch, inside flows)."""
    recorder = call.recorder
    if recorder is not None:
        recorder.touch(call.tracker)
