"""Round trips, time and CPU per grant inside the servers of a benchmark run.

Not a benchmark itself. ``counting_env(env, directory)`` makes the servers load
``statement_counter/sitecustomize.py``, which writes each server's totals into
``directory``; ``Counts.take(...)`` reads them and the CPU of the servers'
PostgreSQL sessions (from /proc, by the pids ``pg_stat_activity`` gives), and
``report(before, after, grants)`` prints the difference per grant.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

COUNTER_DIR = Path(__file__).parent / "statement_counter"


def counting_env(env: dict[str, str], directory: str) -> dict[str, str]:
    """``env`` for servers that count their round trips into ``directory``."""
    path = os.pathsep.join(p for p in (str(COUNTER_DIR), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, "HEADWAY_BENCH_COUNT_DIR": directory}


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Counts:
    """The servers' totals at one moment."""

    #: op -> [calls, round trips, seconds, grants], summed over the servers.
    ops: dict[str, list[float]] = field(default_factory=dict)
    server_cpu: float = 0.0
    #: CPU seconds of each PostgreSQL backend serving the servers, by pid.
    backend_cpu: dict[int, float] = field(default_factory=dict)

    @classmethod
    def take(cls, directory: str, admin_url: str, server_pids: list[int]) -> Counts:
        import psycopg

        counts = cls()
        for path in Path(directory).glob("*.json"):
            data = json.loads(path.read_text())
            counts.server_cpu += float(data["cpu"])
            for op, row in data["ops"].items():
                total = counts.ops.setdefault(op, [0, 0, 0.0, 0])
                for i, value in enumerate(row):
                    total[i] += value
        names = [f"headway:{pid}" for pid in server_pids]
        with psycopg.connect(admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)
            ).fetchall()
        counts.backend_cpu = {int(r[0]): _cpu_of(int(r[0])) for r in rows}
        return counts


def report(before: Counts, after: Counts, grants: int) -> None:
    """Print round trips, time and CPU per grant between two moments."""
    if not grants:
        print("  counts: no grants")
        return
    print(f"  inside the servers, per grant ({grants} grants):")
    print(f"    {'operation':<17} {'calls/grant':>11} {'trips/call':>10} {'trips/grant':>11}"
          f" {'ms/call':>8}")  # fmt: skip
    trips = 0.0
    for op in sorted(after.ops):
        calls, n, seconds, _ = (
            a - b for a, b in zip(after.ops[op], before.ops.get(op, [0, 0, 0.0, 0]), strict=True)
        )
        trips += n
        per_call = f"{n / calls:>10.1f}" if calls else f"{'-':>10}"
        ms = f"{seconds / calls * 1000:>8.2f}" if calls else f"{'-':>8}"
        print(f"    {op:<17} {calls / grants:>11.2f} {per_call} {n / grants:>11.2f} {ms}")
    server = after.server_cpu - before.server_cpu
    backends = sum(cpu - before.backend_cpu.get(pid, 0.0) for pid, cpu in after.backend_cpu.items())
    print(
        f"    round trips per grant {trips / grants:.1f}; CPU per grant: servers"
        f" {server / grants * 1e6:.0f} us, their PostgreSQL sessions"
        f" {backends / grants * 1e6:.0f} us"
    )
