"""Many waiters on one limit through one server: all served, in the order they queued.

One ``headway server start`` process (SQLite by default, or ``--store postgres``),
a limit of 1 held by this script; ``--waiters`` clients (one event loop here, to
the server each is its own connection holding an acquire request) queue behind
it. Once all are queued (the server's own queue, read with ``inspect``), the
slot is released: each waiter, when granted, gives the slot back at once, so
the next one in line gets it. Prints whether every waiter was served, whether
the grant order equals the queue order (FIFO), handoffs per second, and the
server process's memory (resident set while all wait, and its peak).

    python benchmarks/bench_reliability_waiters.py --waiters 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_server_setup import store  # noqa: E402


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and Threads of a process, from /proc."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            found[key] = int(value.split()[0])
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from headway.client.http import HttpClient
    from headway.core.limits import SlotGrant
    from headway.server.runner import ServerProcess
    from headway.settings import get_settings

    with store(args.store) as env:
        env["HEADWAY_WAITER_TTL_SECONDS"] = "120"
        with ServerProcess(env) as server:
            admin = HttpClient(get_settings({"HEADWAY_API_URL": server.url}), retry_seconds=60)
            admin.create_limit("gate", 1)
            first = admin.acquire_slots(["gate"], 1, lease_seconds=600)
            assert isinstance(first, SlotGrant) and first.lease_id is not None
            idle = memory_kib(server.pid)
            url = server.url + "/api/v1/slots"
            order: list[str] = []
            seen: dict[str, Any] = {}

            async def main() -> None:
                limits = httpx.Limits(
                    max_connections=args.waiters + 10, max_keepalive_connections=args.waiters + 10
                )
                async with httpx.AsyncClient(limits=limits, timeout=600) as http:

                    async def one(i: int) -> None:
                        body = {
                            "names": ["gate"],
                            "timeout": 600,
                            "waiter_id": f"w{i}",
                            "holder_id": str(i),
                            "lease_seconds": 600,
                        }
                        # Held up to the server's cap; asking again with the same
                        # waiter id keeps the place in the queue.
                        answer = (await http.post(url + "/acquire", json=body)).json()
                        while not answer["granted"]:
                            answer = (await http.post(url + "/acquire", json=body)).json()
                        order.append(str(i))
                        release = {"lease_id": answer["grant"]["lease_id"]}
                        answer = (await http.post(url + "/release", json=release)).json()
                        assert answer["intact"], "a waiter's lease was lost"

                    tasks = [asyncio.create_task(one(i)) for i in range(args.waiters)]
                    queued_by = time.perf_counter() + 600
                    while True:
                        detail = await asyncio.to_thread(admin.inspect_limit, "gate")
                        if len(detail.waiters) == args.waiters:
                            break
                        if time.perf_counter() > queued_by or any(t.done() for t in tasks):
                            raise SystemExit("the waiters did not all queue")
                        await asyncio.sleep(0.2)
                    seen["queue"] = [w.holder.id for w in detail.waiters]
                    seen["waiting"] = memory_kib(server.pid)
                    started = time.perf_counter()
                    await asyncio.to_thread(admin.release_slots, str(first.lease_id))
                    await asyncio.wait_for(asyncio.gather(*tasks), 3600)
                    seen["seconds"] = time.perf_counter() - started

            asyncio.run(main())
            after = memory_kib(server.pid)
            end = admin.read_limit("gate")
            left = admin.inspect_limit("gate")
            admin.close()
    queue = seen["queue"]
    return {
        "store": args.store,
        "waiters": args.waiters,
        "served": len(order),
        "all_served": len(order) == args.waiters,
        "fifo": order == queue,
        "out_of_order": sum(1 for a, b in zip(order, queue, strict=False) if a != b),
        "handoffs_per_second": round(len(order) / seen["seconds"], 1),
        "seconds": round(seen["seconds"], 2),
        "server_rss_idle_mib": round(idle["VmRSS"] / 1024, 1),
        "server_rss_waiting_mib": round(seen["waiting"]["VmRSS"] / 1024, 1),
        "server_rss_peak_mib": round(after["VmHWM"] / 1024, 1),
        "server_threads_waiting": seen["waiting"]["Threads"],
        "grants_recorded": end.grants,
        "active_slots_at_end": end.active_slots,
        "waiters_at_end": len(left.waiters),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=2000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['waiters']} waiters on one limit through one server ({result['store']})")
    print(f"  served              {result['served']} (all: {result['all_served']})")
    print(f"  FIFO                {result['fifo']} ({result['out_of_order']} out of order)")
    print(f"  handoffs per second {result['handoffs_per_second']} ({result['seconds']} s)")
    print(
        f"  server memory       {result['server_rss_idle_mib']} MiB idle,"
        f" {result['server_rss_waiting_mib']} MiB with all waiting,"
        f" {result['server_rss_peak_mib']} MiB peak;"
        f" {result['server_threads_waiting']} threads while waiting"
    )
    print(
        f"  at the end: {result['active_slots_at_end']:g} active slots,"
        f" {result['waiters_at_end']} waiters, {result['grants_recorded']} grants recorded"
    )


if __name__ == "__main__":
    main()
