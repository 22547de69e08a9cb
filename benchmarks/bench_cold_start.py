"""Cold start: wall time of ``python examples/hello.py``, the whole process.

hello.py is a flow calling one task, recorded in the embedded store. The script
makes a fresh HEADWAY_HOME, runs hello.py once to create the store (not timed:
that run also builds the schema), then times N more runs and prints the
median, min and max. Each timed run must exit 0, and the store must hold one
COMPLETED flow run per run at the end.

The runs use Python's default bytecode cache, as an installed package does
(pip compiles on install; the first run writes ``__pycache__``): a
``PYTHONDONTWRITEBYTECODE`` set in the calling shell is not passed on, since
recompiling every module on every start measures the compiler, not headway.

Usage: python benchmarks/bench_cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="headway-cold-") as home:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HEADWAY_") and k != "PYTHONDONTWRITEBYTECODE"
        }
        env["HEADWAY_HOME"] = home
        command = [sys.executable, str(HELLO)]
        warm = subprocess.run(command, env=env, capture_output=True, text=True)
        if warm.returncode != 0:
            print(warm.stderr, file=sys.stderr)
            return 1
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
        bare = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
            bare.append(time.perf_counter() - start)

        os.environ["HEADWAY_HOME"] = home
        from headway.client.base import get_client
        from headway.core.states import StateType

        runs = get_client().list_flow_runs(limit=args.runs + 10)
        recorded = sum(1 for r in runs if r.state.type is StateType.COMPLETED)
        expected = args.runs + 1
        print(
            f"python examples/hello.py, {args.runs} runs after one warm-up, store in {home},"
            f" load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"wall: median {statistics.median(times):.3f} s"
            f"  (min {min(times):.3f} s, max {max(times):.3f} s)"
            f"; bare interpreter: median {statistics.median(bare):.3f} s"
        )
        print(f"flow runs recorded COMPLETED: {recorded} of {expected}")
        return 0 if recorded == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
