"""ENQUEUE handoff: how long a queued deployment run waits after the previous one ends.

A deployment with ``concurrency_limit=1`` (ENQUEUE), three runs queued at once,
and one worker (``headway worker start``, a real subprocess) on this machine.
Each run sleeps briefly; the gap is the time from one run's end (its final
state recorded) to the next run's start (its RUNNING state, recorded by the
new run process after its Python start-up): claim, process start-up and flow
import included. Several rounds; prints the median and max gap.

    python benchmarks/bench_enqueue_handoff.py [--store sqlite|postgres] [--server] [--rounds 5]
        [--no-standby]

``--server`` puts a ``headway server start`` process in front of the store and
makes the worker and the runs use it over HTTP.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_server_setup import store

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]
FLOWS = """
import time

from headway.flows import flow


@flow
def step(seconds: float = 0.3):
    time.sleep(seconds)
"""


def wait_final(client: Any, run_ids: list[str], timeout: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [client.read_flow_run(r) for r in run_ids]
        if all(r.state.is_final for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise SystemExit(f"runs did not finish: {[r.state for r in runs]}")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--server", action="store_true", help="go through a headway server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queued", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5, help="how long each run takes")
    parser.add_argument(
        "--no-standby",
        action="store_true",
        help="start every run process from scratch (no process kept ready)",
    )
    args = parser.parse_args()
    with store(args.store) as env, tempfile.TemporaryDirectory() as tmp:
        flows = Path(tmp) / "flows.py"
        flows.write_text(FLOWS)
        server = None
        if args.server:
            from headway.server.runner import ServerProcess

            server = ServerProcess(env, log_path=Path(tmp) / "server.log").__enter__()
            env = {**env, "HEADWAY_API_URL": f"http://127.0.0.1:{server.port}"}
            env.pop("HEADWAY_DATABASE_URL", None)
        os.environ.update(env)
        from headway.client.base import get_client
        from headway.core.deployments import DeploymentSpec

        client = get_client()
        client.create_work_pool("pool")
        client.apply_deployment(
            DeploymentSpec(
                flow_name="step",
                name="serial",
                entrypoint=f"{flows}:step",
                work_pool="pool",
                concurrency_limit=1,
                collision_strategy="ENQUEUE",
            )
        )
        log = open(Path(tmp) / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [*CLI, "worker", "start", "--pool", "pool"]
            + (["--no-standby"] if args.no_standby else []),
            env=env,
            stdout=log,
            stderr=log,
        )
        gaps: list[float] = []
        try:
            for _ in range(args.rounds):
                ids = [
                    client.create_deployment_run(
                        "step/serial", parameters={"seconds": args.seconds}
                    ).id
                    for _ in range(args.queued)
                ]
                runs = wait_final(client, ids)
                runs.sort(key=lambda r: r.start_time)
                for before, after in itertools.pairwise(runs):
                    gaps.append((after.start_time - before.end_time).total_seconds())
                bad = [r.state for r in runs if not r.state.is_completed()]
                if bad:
                    raise SystemExit(f"runs did not complete: {bad}")
        finally:
            worker.send_signal(signal.SIGINT)
            worker.wait(30)
            log.close()
            if server is not None:
                server.__exit__(None, None, None)
        where = f"{args.store}" + (" via server" if args.server else " embedded")
        where += ", fresh process per run" if args.no_standby else ", standby process"
        print(
            f"ENQUEUE handoff ({where}), limit 1, {args.queued} queued runs of"
            f" {args.seconds:g} s x {args.rounds} rounds: {len(gaps)} gaps"
        )
        print(
            f"gap from a run's end to the next run's start: median {statistics.median(gaps):.3f} s,"
            f" max {max(gaps):.3f} s (goal: median <= 1 s)"
        )


if __name__ == "__main__":
    main()
