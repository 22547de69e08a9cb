"""Grants per second under contention: many client processes, one limit, two servers.

Two ``headway server start`` processes on one PostgreSQL database; client
processes (half on each server) loop: take one slot of a limit of 4 (waiting
as needed: a held request, woken across servers by LISTEN/NOTIFY), give it
back at once. Prints grants/s over the run, how many of them had to wait, and
the peak number of simultaneous holders an outside gauge saw (must be <= 4).

Usage: python benchmarks/bench_server_contended.py [--clients 8] [--limit 4]
       [--servers 2] [--seconds 10] [--store postgres]
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


def _client(url: str, seconds: float, gauge_url: str | None, start: Any, out: Any) -> None:
    from headway.client.http import HttpClient
    from headway.settings import get_settings

    client = HttpClient(get_settings({"HEADWAY_API_URL": url}))
    client.read_limit("contended")
    gauge = None
    if gauge_url:
        import psycopg

        gauge = psycopg.connect(gauge_url, autocommit=True)
    start.wait()
    grants = waited = peak = 0
    waits: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        grant = client.acquire_slots(["contended"], 1, timeout=60)
        if gauge is not None:
            peak = max(peak, gauge.execute("UPDATE gauge SET n = n + 1 RETURNING n").fetchone()[0])
            gauge.execute("UPDATE gauge SET n = n - 1")
        client.release_slots(grant.lease_id)  # type: ignore[union-attr]
        grants += 1
        if grant.waited_seconds > 0:  # type: ignore[union-attr]
            waited += 1
            waits.append(grant.waited_seconds)  # type: ignore[union-attr]
    out.put((grants, waited, peak, waits))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--store", default="postgres")
    args = parser.parse_args()

    from headway.client.http import HttpClient
    from headway.server.runner import ServerProcess
    from headway.settings import get_settings

    with store(args.store) as env:
        gauge_url = None
        if args.store == "postgres":
            import psycopg

            gauge_url = env["HEADWAY_DATABASE_URL"].replace(
                "postgresql+psycopg://", "postgresql://"
            )
        servers = [ServerProcess(env).start() for _ in range(args.servers)]
        try:
            admin = HttpClient(get_settings({"HEADWAY_API_URL": servers[0].url}))
            admin.create_limit("contended", args.limit)
            if gauge_url:
                with psycopg.connect(gauge_url, autocommit=True) as conn:
                    conn.execute("CREATE TABLE gauge (n integer NOT NULL)")
                    conn.execute("INSERT INTO gauge VALUES (0)")
            ctx = mp.get_context("spawn")
            start, out = ctx.Event(), ctx.Queue()
            procs = [
                ctx.Process(
                    target=_client,
                    args=(servers[i % args.servers].url, args.seconds, gauge_url, start, out),
                )
                for i in range(args.clients)
            ]
            for p in procs:
                p.start()
            time.sleep(1.5)  # every client imported and connected
            t0 = time.perf_counter()
            start.set()
            results = [out.get(timeout=args.seconds + 120) for _ in procs]
            elapsed = max(args.seconds, time.perf_counter() - t0)
            for p in procs:
                p.join()
            grants = sum(r[0] for r in results)
            waited = sum(r[1] for r in results)
            peak = max(r[2] for r in results)
            waits = [w for r in results for w in r[3]]
            left = admin.read_limit("contended").active_slots
            print(
                f"{args.store}, {args.servers} servers, {args.clients} client processes, limit"
                f" {args.limit}: {grants / elapsed:.0f} grants/s ({grants} in {elapsed:.1f} s);"
                f" {waited} waited (p50 {percentile(waits, 0.5) * 1000 if waits else 0:.1f} ms);"
                f" peak holders seen {peak if gauge_url else 'n/a'}; slots held after: {left:.0f}"
            )
            admin.close()
        finally:
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
