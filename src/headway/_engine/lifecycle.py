"""Flow runs alive in this process, so a clean exit never leaves one RUNNING.

Each flow run registers while it runs. When the interpreter exits while a flow
run still runs (in a daemon thread the main thread did not wait for), the
``atexit`` hook records it CRASHED, with its unfinished task runs, before the
recorder's last flush.
"""

from __future__ import annotations

import sys
import threading
from typing import Protocol


class _Closable(Protocol):
    def crash_at_exit(self) -> None: ...


_active: dict[int, _Closable] = {}
_lock = threading.Lock()


def register(engine: _Closable) -> None:
    """A flow run started in this process."""
    with _lock:
        _active[id(engine)] = engine


def unregister(engine: _Closable) -> None:
    """A flow run of this process ended."""
    with _lock:
        _active.pop(id(engine), None)


def crash_unfinished_runs() -> None:
    """Record every still-running flow run CRASHED (called at interpreter exit)."""
    with _lock:
        engines = list(_active.values())
        _active.clear()
    for engine in engines:
        try:
            engine.crash_at_exit()
        except Exception as exc:
            print(f"headway: could not record a run as crashed: {exc}", file=sys.stderr)
