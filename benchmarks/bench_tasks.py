"""Per-task overhead with every task run recorded.

The CPU figure is the process's CPU time (all threads) per task: the work the
SDK and the store do, which the machine's other load does not change much.

Runs 1,000 no-op tasks in one flow, twice: submitted (``noop.submit()``, then
every future waited for) and called directly (``noop()``). The time is the
whole flow call: creating the flow run, running the tasks, and the final flush
that puts every task run in the store before the flow returns. After each flow
the script checks that all 1,000 task runs are in the store, COMPLETED, with
their PENDING, RUNNING and COMPLETED states.

Usage: python benchmarks/bench_tasks.py [--tasks N] [--repeat R]
Uses $HEADWAY_HOME if set, else a temporary directory (removed afterwards).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    temp = None
    if not os.environ.get("HEADWAY_HOME"):
        temp = tempfile.TemporaryDirectory(prefix="headway-bench-")
        os.environ["HEADWAY_HOME"] = temp.name
    # Run logs would print two lines per flow; the figures are what matters here.
    os.environ.setdefault("HEADWAY_LOGGING_LEVEL", "WARNING")

    from headway import flow, task
    from headway.client.base import get_client
    from headway.core.states import StateType

    @task
    def noop() -> None:
        return None

    @flow
    def submitted(n: int) -> str:
        futures = [noop.submit() for _ in range(n)]
        for future in futures:
            future.wait()
        return _flow_run_id()

    @flow
    def direct(n: int) -> str:
        for _ in range(n):
            noop()
        return _flow_run_id()

    def _flow_run_id() -> str:
        from headway.context import get_flow_run_context

        ctx = get_flow_run_context()
        assert ctx is not None
        return ctx.flow_run_id

    client = get_client()
    print(f"store: {client.settings.effective_database_url}")
    print(
        f"{args.tasks} no-op tasks per flow, {args.repeat} flows per mode,"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    direct(10)  # warm up: open the store, import what the first run imports
    ok = True
    for label, fn in (("submit", submitted), ("direct", direct)):
        rates = []
        cpu = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            cpu_start = time.process_time()
            flow_run_id = fn(args.tasks)
            elapsed = time.perf_counter() - start
            cpu.append((time.process_time() - cpu_start) / args.tasks * 1e6)
            rates.append(args.tasks / elapsed)
            task_runs = client.read_task_runs(flow_run_id)
            complete = sum(1 for t in task_runs if t.state.type is StateType.COMPLETED)
            states = len(client.read_states(task_runs[0].id)) if task_runs else 0
            if complete != args.tasks or states != 3:
                ok = False
                print(f"  MISSING RECORDS: {complete}/{args.tasks} completed, {states} states")
        print(
            f"{label:>6}: median {statistics.median(rates):8,.0f} tasks/s"
            f"  (min {min(rates):,.0f}, max {max(rates):,.0f});"
            f" CPU {statistics.median(cpu):.0f} us/task;"
            f" all {args.tasks} task runs recorded: {'yes' if ok else 'NO'}"
        )
    if temp is not None:
        client.close()
        temp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
