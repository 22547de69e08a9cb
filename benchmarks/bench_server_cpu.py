"""CPU time per uncontended slot pair through a loopback server, client and server together.

One process runs a server (``ServerThread``, on SQLite) and one HttpClient that
takes and gives back one slot of its own limit, ``--pairs`` times, plus one
renewal per pair. It prints the process's CPU time per pair (client, server
and store in one figure), and its floor: the same pairs on the embedded store,
without HTTP. On a shared machine CPU time moves far less with the load than
pairs per second do, so this is the figure to compare before and after a change
of the request path (``bench_server_throughput.py`` reports the rate).

Usage: python benchmarks/bench_server_cpu.py [--pairs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_server_setup import store


def _pairs(client: Any, limit: str, pairs: int) -> float:
    start = time.process_time()
    for _ in range(pairs):
        grant = client.acquire_slots([limit], 1)
        client.renew_leases([grant.lease_id])
        client.release_slots(grant.lease_id)
    return (time.process_time() - start) / pairs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from headway.client.base import get_client
    from headway.client.http import HttpClient
    from headway.server.runner import ServerThread
    from headway.settings import get_settings

    with store("sqlite") as env:
        settings = get_settings(env)
        embedded = get_client(settings)
        embedded.create_limit("bench", 1)
        floor = min(_pairs(embedded, "bench", args.pairs) for _ in range(args.rounds))
        embedded.close()
        with ServerThread(settings) as server:
            client = HttpClient(get_settings({**env, "HEADWAY_API_URL": server.url}))
            _pairs(client, "bench", 50)  # warm the connection and the server
            cpu = min(_pairs(client, "bench", args.pairs) for _ in range(args.rounds))
            client.close()
    rounds = f"{args.pairs} pairs (acquire, renew, release), best of {args.rounds}"
    print(f"machine: {os.cpu_count()} CPUs; {rounds}")
    print(f"embedded (floor):      {floor:8.0f} µs CPU per pair")
    print(f"through the server:    {cpu:8.0f} µs CPU per pair (client + server + store)")
    print(f"ratio server/embedded: {cpu / floor:8.1f}")


if __name__ == "__main__":
    main()
