"""Flow runs alive in this process, so a clean exit never leaves one RUNNING.

Each flow run registers while it runs. When the interpreter exits while a flow
run still runs (in a daemon thread the main thread did not wait for), the
``atexit`` hook records it CRASHED, with its unfinished task runs, before the
recorder's last flush.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Protocol


class _Closable(Protocol):
    def crash_at_exit(self) -> None: ...


_active: dict[int, _Closable] = {}
_lock = threading.Lock()

#: This process's id, kept current across ``fork``. A forked child still has its
#: parent's engine frames on its stack; an exception unwinding through them in
#: the child must not record anything for the parent's runs.
pid = os.getpid()


def register(engine: _Closable) -> None:
    """A flow run started in this process."""
    with _lock:
        _active[id(engine)] = engine


def unregister(engine: _Closable) -> None:
    """A flow run of this process ended."""
    with _lock:
        _active.pop(id(engine), None)


def _forget_after_fork() -> None:
    # A forked child runs none of its parent's flow runs: its exit must not end them.
    global _lock, pid
    _active.clear()
    _lock = threading.Lock()
    pid = os.getpid()


os.register_at_fork(after_in_child=_forget_after_fork)


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
