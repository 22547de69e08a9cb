"""Counts a headway server's PostgreSQL round trips and times its slot operations.

Loaded by ``bench_contention.py --count`` into each server it starts (this
directory is put on the servers' PYTHONPATH, and Python imports a
``sitecustomize`` module at start-up); headway itself never loads it. It wraps
psycopg's ``Cursor.execute`` and ``executemany`` (one round trip each:
``executemany`` runs in a pipeline) and the slot part's operations, and
writes its totals to ``$HEADWAY_BENCH_COUNT_DIR/<pid>.json`` twice a second:
per operation, its calls, round trips, seconds inside it and grants; round
trips made outside any of them (the event flusher, the sweeper, NOTIFYs sent
after a commit) under ``other``; and the process's CPU seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

_OPS = (
    "acquire_slots",
    "release_slots",
    "claim_handoff",
    "cancel_slot_wait",
    "refresh_waiters",
    "renew_leases",
)


def _install(out_dir: str) -> None:
    import psycopg

    from headway.store.slots.engine import Slots

    local = threading.local()
    lock = threading.Lock()
    totals: dict[str, list[float]] = {}

    def add(op: str, calls: int, trips: int, seconds: float, grants: int) -> None:
        with lock:
            row = totals.setdefault(op, [0, 0, 0.0, 0])
            row[0] += calls
            row[1] += trips
            row[2] += seconds
            row[3] += grants

    def counting(real: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(local, "op", None) is not None:
                local.trips += 1
            else:
                add("other", 0, 1, 0.0, 0)
            return real(self, *args, **kwargs)

        return wrapper

    def timed(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if getattr(local, "op", None) is not None:
                return real(*args, **kwargs)
            local.op, local.trips = name, 0
            started = time.perf_counter()
            granted = 0
            try:
                result = real(*args, **kwargs)
                granted = int(getattr(result, "grant", None) is not None)
                return result
            finally:
                add(name, 1, local.trips, time.perf_counter() - started, granted)
                local.op = None

        return wrapper

    psycopg.Cursor.execute = counting(psycopg.Cursor.execute)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counting(psycopg.Cursor.executemany)  # type: ignore[method-assign]
    for op in _OPS:
        setattr(Slots, op, timed(op, getattr(Slots, op)))
    path = os.path.join(out_dir, f"{os.getpid()}.json")

    def dump() -> None:
        while True:
            with lock:
                ops = {k: list(v) for k, v in totals.items()}
            times = os.times()
            text = json.dumps({"cpu": times.user + times.system, "ops": ops})
            with open(path + ".tmp", "w") as fh:
                fh.write(text)
            os.replace(path + ".tmp", path)
            time.sleep(0.5)

    threading.Thread(target=dump, name="bench-counter", daemon=True).start()


if os.environ.get("HEADWAY_BENCH_COUNT_DIR"):
    _install(os.environ["HEADWAY_BENCH_COUNT_DIR"])
