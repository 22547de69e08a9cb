"""headway: Python workflows with exact, prompt, crash-safe concurrency control.

The public API is small and fixed; ``tests/unit/test_exported_members.py`` locks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headway.context import tags
    from headway.deployments.serve import serve
    from headway.flows import Flow, flow
    from headway.futures import TaskFuture
    from headway.logging import get_run_logger
    from headway.tasks import Task, task, unmapped

# Public name -> module. Loaded on first use, so ``import headway`` stays cheap
# (``importlib.metadata`` alone would cost a cold start ~35 ms).
_LAZY = {
    "flow": "headway.flows",
    "Flow": "headway.flows",
    "task": "headway.tasks",
    "Task": "headway.tasks",
    "unmapped": "headway.tasks",
    "TaskFuture": "headway.futures",
    "get_run_logger": "headway.logging",
    "serve": "headway.deployments",
    "tags": "headway.context",
}


def __getattr__(name: str) -> Any:
    # The imports stay here, out of the module's top: each costs a cold start.
    if name == "__version__":
        from headway._version import headway_version

        value: Any = headway_version()
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'headway' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
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
