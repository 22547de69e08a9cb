"""Tasks per second on Dask: no-op tasks on a 2-worker LocalCluster, recorded through a server.

Starts ``headway server start`` on a free loopback port (SQLite in a temporary
HEADWAY_HOME), sets ``HEADWAY_API_URL`` so the flow and every Dask worker
report through it, then runs flows of N no-op tasks (``noop.map(range(N))``)
with ``DaskTaskRunner(cluster_kwargs={"n_workers": 2, ...})``.

Figures per flow:

* tasks/s: N over the time from the first submission until every future is
  done (each worker has flushed its task runs to the server by then);
* flow wall time: the whole flow call, with the LocalCluster's start and close;
* Dask alone: N plain no-op Dask tasks on the same cluster, for scale;
* CPU ms per task spent in the flow's process (Dask client and scheduler
  included), headway vs Dask alone: less sensitive to a busy machine than
  the rates.

Afterwards it checks through the server that all N task runs of each flow are
COMPLETED with PENDING, RUNNING and COMPLETED in their history (exit 1 if not).

Usage: python benchmarks/bench_dask.py [--tasks N] [--repeat R] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any


def noop_plain(i: int) -> int:
    return i


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads per Dask worker")
    args = parser.parse_args()

    temp = tempfile.TemporaryDirectory(prefix="headway-bench-dask-")
    os.environ["HEADWAY_HOME"] = temp.name
    os.environ.pop("HEADWAY_API_URL", None)
    os.environ.setdefault("HEADWAY_LOGGING_LEVEL", "WARNING")

    from headway import flow, task
    from headway.client.base import get_client
    from headway.context import get_flow_run_context
    from headway.core.states import StateType
    from headway.server.runner import ServerProcess
    from headway.task_runners import DaskTaskRunner

    @task
    def noop(i: int) -> int:
        return i

    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "threads_per_worker": args.threads,
            "dashboard_address": ":0",
        }
    )

    @flow(task_runner=runner)
    def many(n: int) -> dict[str, Any]:
        ctx = get_flow_run_context()
        assert ctx is not None
        dask_client = ctx.task_runner.client  # type: ignore[attr-defined]
        workers = len(dask_client.scheduler_info()["workers"])
        start, cpu = time.perf_counter(), time.process_time()
        futures = noop.map(range(n))
        results = futures.result()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert results == list(range(n))
        start, plain_cpu = time.perf_counter(), time.process_time()
        plain = dask_client.gather([dask_client.submit(noop_plain, i) for i in range(n)])
        plain_elapsed = time.perf_counter() - start
        plain_cpu = time.process_time() - plain_cpu
        assert plain == list(range(n))
        return {
            "id": ctx.flow_run_id,
            "elapsed": elapsed,
            "cpu": cpu,
            "plain": plain_elapsed,
            "plain_cpu": plain_cpu,
            "workers": workers,
        }

    server = ServerProcess(dict(os.environ)).start()
    try:
        os.environ["HEADWAY_API_URL"] = server.url
        client = get_client()
        print(
            f"server: {server.url} (store {client.settings.home}/headway.db),"
            f" client {type(client).__name__}"
        )
        print(
            f"{args.tasks} no-op tasks per flow on a LocalCluster of 2 worker processes x"
            f" {args.threads} threads, {args.repeat} flows, Python {sys.version.split()[0]},"
            f" {os.cpu_count()} CPUs"
        )
        ok = True
        rates, plain_rates = [], []
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        for _ in range(args.repeat):
            wall_start = time.perf_counter()
            out = many(args.tasks)
            wall = time.perf_counter() - wall_start
            rate = args.tasks / out["elapsed"]
            plain_rate = args.tasks / out["plain"]
            rates.append(rate)
            plain_rates.append(plain_rate)
            task_runs = client.read_task_runs(out["id"])
            completed = [t for t in task_runs if t.state.type is StateType.COMPLETED]
            sample = task_runs[len(task_runs) // 2] if task_runs else None
            history = [s.type for s in client.read_states(sample.id)] if sample else []
            good = (
                len(task_runs) == args.tasks
                and len(completed) == args.tasks
                and history == [StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]
                and out["workers"] == 2
            )
            ok = ok and good
            print(
                f"  {rate:8.0f} tasks/s   flow wall {wall:5.2f} s   Dask alone {plain_rate:6.0f}"
                f" tasks/s   CPU/task {1000 * out['cpu'] / args.tasks:.2f} ms"
                f" (Dask alone {1000 * out['plain_cpu'] / args.tasks:.2f} ms)"
                f"   records: {len(completed)}/{args.tasks} COMPLETED"
                f"{'' if good else '  <-- RECORDS WRONG'}"
            )
        print(
            f"median: {statistics.median(rates):.0f} tasks/s through the server"
            f" (Dask alone on the same cluster: {statistics.median(plain_rates):.0f} tasks/s)"
        )
        return 0 if ok else 1
    finally:
        server.stop()
        temp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
