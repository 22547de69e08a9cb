"""The public API is small and fixed: these are the names ``headway`` exports."""

from __future__ import annotations

import headway
import headway.futures
import headway.task_runners


def test_exported_members() -> None:
    # Exact on purpose: adding a public name is a decision, made here too.
    assert sorted(headway.__all__) == [
        "Flow",
        "Task",
        "TaskFuture",
        "__version__",
        "flow",
        "get_run_logger",
        "serve",
        "tags",
        "task",
        "unmapped",
    ]
    for name in headway.__all__:
        assert getattr(headway, name) is not None, name


def test_task_runner_and_future_modules_export_their_public_names() -> None:
    # DaskTaskRunner is reachable by name but left out of __all__: `import *`
    # must not import Dask.
    assert sorted(headway.task_runners.__all__) == [
        "ProcessPoolTaskRunner",
        "TaskRunner",
        "ThreadPoolTaskRunner",
    ]
    assert set(headway.futures.__all__) == {"DoneAndNotDone", "FutureList", "TaskFuture", "wait"}


def test_unknown_names_raise_attribute_error() -> None:
    try:
        headway.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
