"""Handoff latency: from a holder's release to the next waiter running, by notification.

A 1-slot limit; a waiter is queued (checked in the store) while the holder
holds; the holder then leaves its block. The handoff is the time from just
before the release to the moment the waiter's block starts:

- in-process: holder and waiter are threads of one process (an event wakes it);
- cross-process: the waiter is another process (a Unix datagram wakes it).

    python benchmarks/bench_handoff.py [--rounds 200]

Prints p50, p90 and max for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CHILD = """
import sys, time
from headway.concurrency.sync import concurrency
for line in sys.stdin:
    if line.strip() != "go":
        break
    with concurrency("handoff"):
        print(repr(time.time()), flush=True)
"""


def queued(client: object) -> bool:
    return len(client.inspect_limit("handoff").waiters) == 1  # type: ignore[attr-defined]


def wait_queued(client: object) -> None:
    deadline = time.monotonic() + 30
    while not queued(client):
        if time.monotonic() > deadline:
            raise SystemExit("the waiter never queued")
        time.sleep(0.001)


def in_process(client: object, rounds: int) -> list[float]:
    from headway.concurrency.sync import concurrency

    samples: list[float] = []
    for _ in range(rounds):
        entered: list[float] = []
        done = threading.Event()

        def waiter(entered: list[float] = entered, done: threading.Event = done) -> None:
            with concurrency("handoff"):
                entered.append(time.perf_counter())
            done.set()

        with concurrency("handoff"):
            t = threading.Thread(target=waiter)
            t.start()
            wait_queued(client)
            released_at = time.perf_counter()
        done.wait(30)
        t.join()
        samples.append(entered[0] - released_at)
    return samples


def cross_process(client: object, rounds: int) -> list[float]:
    from headway.concurrency.sync import concurrency

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert child.stdin is not None and child.stdout is not None
    samples: list[float] = []
    try:
        for _ in range(rounds):
            with concurrency("handoff"):
                child.stdin.write("go\n")
                child.stdin.flush()
                wait_queued(client)
                released_at = time.time()
            entered = float(child.stdout.readline())
            samples.append(entered - released_at)
        child.stdin.write("stop\n")
        child.stdin.flush()
        child.wait(30)
    finally:
        child.kill()
    return samples


def show(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(len(ms) * 0.9) - 1]
    print(
        f"  {label:14s} p50 {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms"
        f"   max {ms[-1]:7.2f} ms   ({len(ms)} handoffs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    os.environ["HEADWAY_HOME"] = tempfile.mkdtemp(prefix="headway-bench-")
    os.environ.pop("HEADWAY_API_URL", None)
    os.environ.pop("HEADWAY_DATABASE_URL", None)
    from headway.client.base import get_client

    client = get_client()
    client.create_limit("handoff", 1)
    in_process(client, 5)  # warm up
    local = in_process(client, args.rounds)
    remote = cross_process(client, args.rounds)
    print("handoff latency: release -> next waiter running (embedded SQLite, 1-slot limit)")
    show("in-process", local)
    show("cross-process", remote)
    print(f"  load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
