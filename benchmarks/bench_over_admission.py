"""Never over-admitted: processes x threads hammer one limit; an outside observer counts.

Every worker thread loops ``with concurrency("hammer", occupy=1 or 2): ...``.
Inside the block it reports to an observer that knows nothing of headway: a
counter file under an exclusive ``flock``, holding the slots in use right now.
Entering adds the thread's slots and checks the sum against the limit; leaving
subtracts them. A sum above the limit is a violation.

    python benchmarks/bench_over_admission.py                      # >= 10,000 acquisitions
    python benchmarks/bench_over_admission.py --processes 3 --threads 4 --acquisitions 600 --json

Prints acquisitions, violations (must be 0), the most slots seen in use, and
grants per second. The test suite runs a short version (tests/stress).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LIMIT_NAME = "hammer"


class Observer:
    """Slots in use right now, as the holders report them: ``now most violations entries``."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit

    def _update(self, delta: int) -> None:
        with open(self.path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            now, most, violations, entries = (int(x) for x in (fh.read().split() or [0] * 4))
            now += delta
            if delta > 0:
                entries += 1
                most = max(most, now)
                if now > self.limit:
                    violations += 1
            fh.seek(0)
            fh.truncate()
            fh.write(f"{now} {most} {violations} {entries}")

    def enter(self, slots: int) -> None:
        self._update(slots)

    def leave(self, slots: int) -> None:
        self._update(-slots)

    @staticmethod
    def read(path: Path) -> dict[str, int]:
        now, most, violations, entries = (int(x) for x in path.read_text().split())
        return {"now": now, "most": most, "violations": violations, "entries": entries}


def worker(args: argparse.Namespace) -> None:
    """One process: ``--threads`` threads, each doing its share of acquisitions."""
    from headway.concurrency.sync import concurrency

    observer = Observer(Path(args.observer), args.limit)
    go = Path(args.go)
    Path(args.ready, str(os.getpid())).touch()
    while not go.exists():
        time.sleep(0.002)
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


def run(args: argparse.Namespace) -> dict[str, float]:
    """Start the workers, wait for them, and report what the observer saw."""
    home = Path(args.home or tempfile.mkdtemp(prefix="headway-bench-"))
    env = {**os.environ, "HEADWAY_HOME": str(home)}
    env.pop("HEADWAY_API_URL", None)
    os.environ.update(env)
    from headway.client.base import get_client

    client = get_client()
    try:
        client.delete_limit(LIMIT_NAME, force=True)
    except Exception:
        pass
    client.create_limit(LIMIT_NAME, args.limit)
    work = Path(tempfile.mkdtemp(prefix="headway-observer-"))
    observer, ready, go = work / "observer", work / "ready", work / "go"
    ready.mkdir()
    per_thread = max(1, args.acquisitions // (args.processes * args.threads))
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
    procs = [subprocess.Popen(command, env=env) for _ in range(args.processes)]
    try:
        deadline = time.monotonic() + 120
        while len(list(ready.iterdir())) < args.processes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("workers did not start")
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
    limit = client.read_limit(LIMIT_NAME)
    detail = client.inspect_limit(LIMIT_NAME)
    return {
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
        "load_average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--acquisitions", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--hold", type=float, default=0.0, help="max seconds held (random)")
    parser.add_argument("--home", default=None, help="HEADWAY_HOME (default: a new temp dir)")
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--observer", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    parser.add_argument("--per-thread", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"over-admission: {result['processes']} processes x {result['threads']} threads on a"
        f" limit of {result['limit']} (occupy 1 or 2)"
    )
    print(f"  acquisitions        {result['acquisitions']}")
    print(f"  violations          {result['violations']}  (must be 0)")
    print(f"  most slots in use   {result['most_slots_in_use']}")
    print(f"  grants per second   {result['grants_per_second']}")
    print(f"  load average        {result['load_average']}")
    print(
        f"  at the end: {result['active_slots_at_end']:g} active slots,"
        f" {result['holders_at_end']} holders, {result['waiters_at_end']} waiters"
    )


if __name__ == "__main__":
    main()
