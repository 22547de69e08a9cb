"""Uncontended acquire+release pairs per second through one headway server.

A real ``headway server start`` (one process) on SQLite and on PostgreSQL;
client processes each take and give back one slot of their own limit (so no
request ever waits) as fast as they can, through HttpClient, for a fixed time.
Prints pairs/s for each store (the goal: at least 1,000/s), and the latency of
one pair seen by a single client. A server is measured serving many clients:
one client alone is bound by its own round trips (and on PostgreSQL by each
commit's flush to disk), so the default is 8 client processes, all on this
same machine as the server and the database.

Usage: python benchmarks/bench_server_throughput.py [--stores sqlite,postgres]
       [--clients 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_server_setup import percentile, store


def _client(url: str, limit: str, seconds: float, ready: Any, start: Any, out: Any) -> None:
    from headway.client.http import HttpClient
    from headway.settings import get_settings

    client = HttpClient(get_settings({"HEADWAY_API_URL": url}))
    grant = client.acquire_slots([limit], 1)  # warm the connection
    client.release_slots(grant.lease_id)  # type: ignore[union-attr,arg-type]
    ready.put(1)
    start.wait()
    # Every client stops at the same moment: pairs / seconds is the server's rate.
    pairs = 0
    deadline = start.at.value + seconds
    while time.time() < deadline:
        grant = client.acquire_slots([limit], 1)
        client.release_slots(grant.lease_id)  # type: ignore[union-attr,arg-type]
        pairs += 1
    out.put(pairs)


class _Start:
    """A start signal carrying the wall-clock moment it was given."""

    def __init__(self, ctx: Any) -> None:
        self._event = ctx.Event()
        self.at = ctx.Value("d", 0.0)

    def go(self) -> None:
        self.at.value = time.time()
        self._event.set()

    def wait(self) -> None:
        self._event.wait()


def run(kind: str, clients: int, seconds: float) -> None:
    from headway.client.http import HttpClient
    from headway.server.runner import ServerProcess
    from headway.settings import get_settings

    with store(kind) as env, ServerProcess(env) as server:
        admin = HttpClient(get_settings({"HEADWAY_API_URL": server.url}))
        for i in range(clients):
            admin.create_limit(f"bench-{i}", 1_000_000)
        lat = []
        for _ in range(300):
            t0 = time.perf_counter()
            grant = admin.acquire_slots(["bench-0"], 1)
            admin.release_slots(grant.lease_id)  # type: ignore[union-attr,arg-type]
            lat.append(time.perf_counter() - t0)
        ctx = mp.get_context("spawn")
        start = _Start(ctx)
        ready = ctx.Queue()
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_client, args=(server.url, f"bench-{i}", seconds, ready, start, out))
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        for _ in procs:  # every client imported and connected before the clock starts
            ready.get(timeout=120)
        start.go()
        total = sum(out.get(timeout=seconds + 60) for _ in procs)
        elapsed = seconds
        for p in procs:
            p.join()
        leaked = sum(admin.read_limit(f"bench-{i}").active_slots for i in range(clients))
        print(
            f"{kind:9s} one server, {clients} client processes: {total / elapsed:8.0f} pairs/s"
            f"  ({total} pairs in {elapsed:.1f} s; slots still held after: {leaked:.0f})"
        )
        print(
            f"{kind:9s} one client alone: pair latency p50 {percentile(lat, 0.5) * 1000:.2f} ms,"
            f" p99 {percentile(lat, 0.99) * 1000:.2f} ms ({1 / percentile(lat, 0.5):.0f} pairs/s)"
        )
        admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; server: 1 process (headway server start)")
    for kind in args.stores.split(","):
        run(kind.strip(), args.clients, args.seconds)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
