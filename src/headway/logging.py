"""Run logs: ``get_run_logger()`` and ``log_prints``.

Inside a flow or task, :func:`get_run_logger` returns a standard
``logging.LoggerAdapter``. Each line it logs is printed to stderr and recorded
in the store with the flow run and task run it belongs to (``headway flow-run
logs ID`` shows them). With ``log_prints=True`` (on the flow, the task, or
``HEADWAY_LOG_PRINTS``), ``print()`` inside the run is recorded too and still
prints as usual.

The run loggers are ``headway.flow_runs`` and ``headway.task_runs``; they do not
propagate to the root logger, so an application's own logging set-up does not
print run lines twice. ``HEADWAY_LOGGING_LEVEL`` sets what the console shows;
the store records every line at INFO and above (and DEBUG when the setting is
DEBUG).
"""

from __future__ import annotations

import builtins
import logging as _logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headway._engine.recorder import get_recorder
from headway.context import flow_run_var, task_run_var
from headway.core.models import LogRecord
from headway.exceptions import MissingContextError
from headway.settings import get_settings

if TYPE_CHECKING:
    from headway.client.base import Client

Sink = Callable[["Client | None", "LogRecord"], None]

FLOW_LOGGER = "headway.flow_runs"
TASK_LOGGER = "headway.task_runs"

_setup_lock = threading.Lock()
_formatter = _logging.Formatter()
_configured = False


class RunLogger(_logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger bound to one flow run or task run."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        ours = dict(self.extra or {})
        extra = kwargs.get("extra")
        kwargs["extra"] = {**extra, **ours} if extra else ours
        return msg, kwargs


class _StoreHandler(_logging.Handler):
    """Hands each run log line to its sink (the recorder, or a worker's collector)."""

    def emit(self, record: _logging.LogRecord) -> None:
        client = getattr(record, "headway_client", None)
        sink: Sink | None = getattr(record, "headway_sink", None)
        if client is None and sink is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{_formatter.formatException(record.exc_info)}"
            line = LogRecord(
                flow_run_id=getattr(record, "flow_run_id", None),
                task_run_id=getattr(record, "task_run_id", None),
                level=record.levelno,
                level_name=record.levelname,
                logger=record.name,
                message=message,
                timestamp=datetime.fromtimestamp(record.created, UTC),
            )
            if sink is not None:
                sink(client, line)
            else:
                get_recorder().log(client, line)  # type: ignore[arg-type]
        except Exception:
            self.handleError(record)


class _ConsoleHandler(_logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (it may be replaced after set-up)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _ConsoleFilter(_logging.Filter):
    def filter(self, record: _logging.LogRecord) -> bool:
        # print() already wrote captured prints to stdout.
        return not getattr(record, "headway_from_print", False)


class _ConsoleFormatter(_logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(message)s", "%H:%M:%S")

    def format(self, record: _logging.LogRecord) -> str:
        label = getattr(record, "run_label", None)
        saved = record.msg, record.args
        if label:
            record.msg, record.args = f"{label} - {record.getMessage()}", None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


def _configure() -> None:
    global _configured
    with _setup_lock:
        if _configured:
            return
        try:
            level = get_settings().logging_level
        except Exception:
            level = "INFO"
        store = _StoreHandler()
        console = _ConsoleHandler()
        console.addFilter(_ConsoleFilter())
        console.setFormatter(_ConsoleFormatter())
        # The setting quiets the console; the store keeps every INFO line regardless
        # (DEBUG lines too when the setting asks for them).
        console.setLevel(level)
        for name in (FLOW_LOGGER, TASK_LOGGER):
            logger = _logging.getLogger(name)
            logger.setLevel(min(_logging.INFO, _logging.getLevelName(level)))
            logger.propagate = False
            logger.addHandler(store)
            logger.addHandler(console)
        _configured = True


def run_logger(
    *,
    flow_run_id: str | None,
    task_run_id: str | None,
    label: str,
    client: Client | None,
    sink: Sink | None = None,
) -> RunLogger:
    """A logger for one run (the engine's own messages use it too)."""
    if not _configured:
        _configure()
    name = TASK_LOGGER if task_run_id is not None else FLOW_LOGGER
    return RunLogger(
        _logging.getLogger(name),
        {
            "flow_run_id": flow_run_id,
            "task_run_id": task_run_id,
            "run_label": label,
            "headway_client": client,
            "headway_sink": sink,
        },
    )


def get_run_logger() -> RunLogger:
    """The logger of the current task run, or of the current flow run.

    Raises :class:`~headway.exceptions.MissingContextError` outside flows and tasks.
    """
    task_ctx = task_run_var.get()
    if task_ctx is not None:
        return run_logger(
            flow_run_id=task_ctx.flow_run_id,
            task_run_id=task_ctx.task_run_id,
            label=f"Task run {task_ctx.task_run_name!r}",
            client=task_ctx.client,
            sink=task_ctx.log_sink,
        )
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        return run_logger(
            flow_run_id=flow_ctx.flow_run_id,
            task_run_id=None,
            label=f"Flow run {flow_ctx.flow_run_name!r}",
            client=flow_ctx.client,
        )
    raise MissingContextError(
        "get_run_logger() needs a running flow or task: call it inside a function"
        " decorated with @flow or @task (use logging.getLogger() elsewhere)"
    )


# -- log_prints ---------------------------------------------------------------------------
_builtin_print = builtins.print
_print_installed = False


def _recording_print(*args: Any, **kwargs: Any) -> None:
    _builtin_print(*args, **kwargs)
    target = kwargs.get("file")
    if target is not None and target is not sys.stdout:
        return
    ctx = task_run_var.get() or flow_run_var.get()
    if ctx is None or not ctx.log_prints:
        return
    sep = kwargs.get("sep")
    message = (" " if sep is None else sep).join(str(a) for a in args)
    get_run_logger().info(message, extra={"headway_from_print": True})


def capture_prints() -> None:
    """Route ``print`` through runs with ``log_prints`` (installed once, then cheap)."""
    global _print_installed
    with _setup_lock:
        if not _print_installed:
            builtins.print = _recording_print
            _print_installed = True


__all__ = ["RunLogger", "get_run_logger"]
