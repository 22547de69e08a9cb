"""Uncontended acquire+release pairs per second of ``concurrency()`` on the embedded store.

Each pair is a full ``with concurrency("db"): pass``: validation, one acquire
transaction (a lease row, the limit's count), the lease registered with the
renewer, and one release transaction. The store is a fresh SQLite file.

    python benchmarks/bench_acquire.py [--pairs 5000] [--rounds 3]

Prints pairs/s for sync and asyncio (median and best of the rounds), and the
process CPU time per pair: on a machine busy with other work, wall-clock rates
drop while CPU time per pair shows what the code itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time


def sync_round(pairs: int) -> tuple[float, float]:
    """(pairs per second, CPU microseconds per pair)."""
    from headway.concurrency.sync import concurrency

    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(pairs):
        with concurrency("db"):
            pass
    return pairs / (time.perf_counter() - started), (time.process_time() - cpu) / pairs * 1e6


def async_round(pairs: int) -> tuple[float, float]:
    """(pairs per second, CPU microseconds per pair, all threads of the process)."""
    from headway.concurrency.asyncio import concurrency

    async def run() -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(pairs):
            async with concurrency("db"):
                pass
        elapsed = time.perf_counter() - started
        return pairs / elapsed, (time.process_time() - cpu) / pairs * 1e6

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--async-pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["HEADWAY_HOME"] = tempfile.mkdtemp(prefix="headway-bench-")
    os.environ.pop("HEADWAY_API_URL", None)
    os.environ.pop("HEADWAY_DATABASE_URL", None)
    from headway.client.base import get_client

    client = get_client()
    client.create_limit("db", 10)
    sync_round(200)  # warm up: store opened, statements prepared, renewer started
    sync = [sync_round(args.pairs) for _ in range(args.rounds)]
    async_round(100)
    asyncs = [async_round(args.async_pairs) for _ in range(args.rounds)]
    limit = client.read_limit("db")
    assert limit.active_slots == 0, limit
    print("uncontended concurrency() acquire+release pairs per second (embedded SQLite)")
    for label, rounds, size in (("sync", sync, args.pairs), ("asyncio", asyncs, args.async_pairs)):
        rates = [r for r, _ in rounds]
        cpu = statistics.median(c for _, c in rounds)
        print(
            f"  {label:8s} median {statistics.median(rates):7.0f}/s   best {max(rates):7.0f}/s"
            f"   CPU {cpu:5.0f} us/pair ({1e6 / cpu:5.0f} pairs per CPU-second)"
            f"   [{len(rounds)} rounds of {size}]"
        )
    print(f"  grants recorded: {limit.grants}; load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
