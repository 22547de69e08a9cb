"""Never over-admitted, long run: 8 processes x 4 threads on one limit, two ways.

- ``--store sqlite``: every thread is in-process on the embedded SQLite store
  (runs ``bench_over_admission.py``);
- ``--store postgres``: two ``headway server start`` processes on one PostgreSQL
  database (a private cluster this script starts: initdb as the ``postgres``
  user, so it needs root); half the client processes reach each server over HTTP.

Every worker thread loops ``with concurrency("hammer", occupy=1 or 2): ...``
and reports to an observer outside headway (a counter file under ``flock``: the
slots in use now; a sum above the limit is a violation). Prints acquisitions,
violations (must be 0), grants/s, and what the store says at the end (no slot,
holder or waiter left; grants recorded = acquisitions).

    python benchmarks/bench_reliability_load.py --store sqlite   --acquisitions 100000
    python benchmarks/bench_reliability_load.py --store postgres --acquisitions 100000
    python benchmarks/bench_reliability_load.py --store both     --acquisitions 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_over_admission import LIMIT_NAME, Observer  # noqa: E402
from bench_server_setup import store  # noqa: E402


def embedded(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded SQLite run: bench_over_admission.py with these sizes."""
    command = [
        sys.executable,
        str(HERE / "bench_over_admission.py"),
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        "--acquisitions",
        str(args.acquisitions),
        "--limit",
        str(args.limit),
        "--hold",
        str(args.hold),
        "--max-seconds",
        str(args.max_seconds),
        "--json",
    ]
    with store("sqlite") as env:
        command += ["--home", env["HEADWAY_HOME"]]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"embedded run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["store"] = "embedded SQLite"
    return result


def worker(args: argparse.Namespace) -> None:
    """One client process of the server run: ``--threads`` threads through one server."""
    import random

    from headway.concurrency.sync import concurrency

    observer = Observer(Path(args.observer), args.limit)
    Path(args.ready, str(os.getpid())).touch()
    go = Path(args.go)
    while not go.exists():
        time.sleep(0.005)
    errors: list[BaseException] = []

    def loop(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(args.per_thread):
                slots = rng.choice((1, 1, 2))
                with concurrency(LIMIT_NAME, occupy=slots):
                    observer.enter(slots)
                    if args.hold:
                        time.sleep(rng.random() * args.hold)
                    observer.leave(slots)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(os.getpid() * 100 + i,)) for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"worker {os.getpid()} failed: {errors[0]!r}")


def through_servers(args: argparse.Namespace) -> dict[str, Any]:
    """The PostgreSQL run: two servers, client processes split between them."""
    from bench_reliability_faults import PrivateCluster

    from headway.client.http import HttpClient
    from headway.server.runner import ServerProcess, free_port
    from headway.settings import get_settings

    # A cluster of its own: two servers under this load hold far more connections
    # than a shared PostgreSQL should give one benchmark.
    cluster = PrivateCluster(free_port()).start()
    with store("sqlite") as env:
        env["HEADWAY_DATABASE_URL"] = cluster.url
        servers = [ServerProcess(env).start() for _ in range(args.servers)]
        try:
            admin = HttpClient(get_settings({"HEADWAY_API_URL": servers[0].url}))
            admin.create_limit(LIMIT_NAME, args.limit)
            work = Path(tempfile.mkdtemp(prefix="headway-observer-"))
            observer, ready, go = work / "observer", work / "ready", work / "go"
            ready.mkdir()
            per_thread = max(1, args.acquisitions // (args.processes * args.threads))
            procs = []
            for i in range(args.processes):
                client_env = {k: v for k, v in env.items() if k not in ("HEADWAY_DATABASE_URL",)}
                client_env["HEADWAY_API_URL"] = servers[i % len(servers)].url
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--observer",
                    str(observer),
                    "--ready",
                    str(ready),
                    "--go",
                    str(go),
                    "--limit",
                    str(args.limit),
                    "--threads",
                    str(args.threads),
                    "--per-thread",
                    str(per_thread),
                    "--hold",
                    str(args.hold),
                ]
                procs.append(subprocess.Popen(command, env=client_env))
            try:
                deadline = time.monotonic() + 120
                while len(list(ready.iterdir())) < args.processes:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise SystemExit("client processes did not start")
                    time.sleep(0.01)
                started = time.perf_counter()
                go.touch()
                codes = [p.wait(timeout=args.max_seconds) for p in procs]
                elapsed = time.perf_counter() - started
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            seen = Observer.read(observer)
            limit = admin.read_limit(LIMIT_NAME)
            detail = admin.inspect_limit(LIMIT_NAME)
            admin.close()
        finally:
            for server in servers:
                server.stop()
            cluster.stop()
    return {
        "store": f"PostgreSQL (a private cluster) through {args.servers} servers",
        "processes": args.processes,
        "threads": args.threads,
        "limit": args.limit,
        "acquisitions": seen["entries"],
        "expected": per_thread * args.threads * args.processes,
        "violations": seen["violations"],
        "most_slots_in_use": seen["most"],
        "slots_in_use_at_end": seen["now"],
        "grants_recorded": limit.grants,
        "active_slots_at_end": limit.active_slots,
        "holders_at_end": len(detail.holders),
        "waiters_at_end": len(detail.waiters),
        "worker_exit_codes": sum(1 for c in codes if c != 0),
        "seconds": round(elapsed, 3),
        "grants_per_second": round(seen["entries"] / elapsed, 1),
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['store']}: {result['processes']} processes x {result['threads']} threads,"
        f" limit {result['limit']} (occupy 1 or 2)"
    )
    print(f"  acquisitions        {result['acquisitions']} (expected {result['expected']})")
    print(f"  violations          {result['violations']}  (must be 0)")
    print(f"  most slots in use   {result['most_slots_in_use']}")
    print(f"  grants per second   {result['grants_per_second']} over {result['seconds']} s")
    print(f"  grants recorded     {result['grants_recorded']}")
    print(
        f"  at the end: {result['active_slots_at_end']:g} active slots,"
        f" {result['holders_at_end']} holders, {result['waiters_at_end']} waiters,"
        f" {result['worker_exit_codes']} failed processes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--acquisitions", type=int, default=100_000, help="per store")
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--hold", type=float, default=0.0, help="max seconds held (random)")
    parser.add_argument("--max-seconds", type=float, default=3600)
    parser.add_argument("--json", action="store_true", help="print one JSON object per store")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--observer", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    parser.add_argument("--per-thread", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs = []
    if args.store in ("sqlite", "both"):
        runs.append(embedded)
    if args.store in ("postgres", "both"):
        runs.append(through_servers)
    for run in runs:
        result = run(args)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            report(result)


if __name__ == "__main__":
    main()
