"""Workers: claim runs from a work pool and run each in a subprocess.

``headway worker start --pool P`` runs a :class:`Worker`; ``flow.serve()`` runs
one for its own deployment. See :mod:`headway.worker.worker`. (Imported lazily:
a run process, ``python -m headway.worker.execute``, never loads the worker.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headway.worker.worker import Worker


def __getattr__(name: str) -> Any:
    if name == "Worker":
        # Lazy: a run process imports headway.worker.execute, never the worker.
        from headway.worker.worker import Worker

        return Worker
    raise AttributeError(f"module 'headway.worker' has no attribute {name!r}")


__all__ = ["Worker"]
