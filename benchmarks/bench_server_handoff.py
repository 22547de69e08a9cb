"""Handoff latency through a headway server: release in one process -> grant in another.

Two client processes share a limit of 1 through one ``headway server start``
(SQLite, then PostgreSQL). They take turns: the holder waits until the other
is queued (its request held by the server), notes the time and releases; the
waiter notes when its grant arrives. The handoff is the difference (same
machine clock). Prints p50 and max over N handoffs (goal: p50 <= 20 ms).

Usage: python benchmarks/bench_server_handoff.py [--stores sqlite,postgres] [--handoffs 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_server_setup import percentile, store


def _player(
    url: str, me: int, total: int, first_lease: str, stamps: Any, out: Any, ready: Any
) -> None:
    from headway.client.http import HttpClient
    from headway.core.limits import SlotGrant
    from headway.settings import get_settings

    client = HttpClient(get_settings({"HEADWAY_API_URL": url}))
    client.read_limit("handoff")  # warm the connection
    ready.wait()
    # Player 0 starts with the slot (taken for it before either player started).
    grant: Any = SimpleNamespace(lease_id=first_lease) if me == 0 else None
    handoffs = []
    for k in range(total):
        if k % 2 == me:
            # My turn to give: once the other player is queued (held by the server).
            while not client.inspect_limit("handoff").waiters:
                time.sleep(0.002)
            stamps.put(time.time())
            client.release_slots(grant.lease_id)
            grant = None
        else:
            grant = client.acquire_slots(["handoff"], 1, timeout=60)
            assert isinstance(grant, SlotGrant)
            handoffs.append(time.time() - stamps.get(timeout=60))
    if grant is not None:
        client.release_slots(grant.lease_id)
    out.put(handoffs)
    client.close()


def run(kind: str, handoffs: int) -> None:
    from headway.client.http import HttpClient
    from headway.server.runner import ServerProcess
    from headway.settings import get_settings

    with store(kind) as env, ServerProcess(env) as server:
        admin = HttpClient(get_settings({"HEADWAY_API_URL": server.url}))
        admin.create_limit("handoff", 1)
        first = admin.acquire_slots(["handoff"], 1)
        ctx = mp.get_context("spawn")
        stamps = ctx.Queue()
        out = ctx.Queue()
        ready = ctx.Event()
        # Player 0 starts holding; the slot then passes back and forth ``handoffs`` times.
        a = ctx.Process(
            target=_player, args=(server.url, 0, handoffs, first.lease_id, stamps, out, ready)
        )
        b = ctx.Process(target=_player, args=(server.url, 1, handoffs, "", stamps, out, ready))
        a.start()
        b.start()
        time.sleep(1.0)  # both processes imported and connected
        ready.set()
        measured = out.get(timeout=600) + out.get(timeout=600)
        a.join()
        b.join()
        ms = [x * 1000 for x in measured]
        print(
            f"{kind:9s} handoff through one server, {len(ms)} handoffs between two processes:"
            f" p50 {percentile(ms, 0.5):.1f} ms, p90 {percentile(ms, 0.9):.1f} ms,"
            f" max {max(ms):.1f} ms"
        )
        admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--handoffs", type=int, default=100)
    args = parser.parse_args()
    for kind in args.stores.split(","):
        run(kind.strip(), args.handoffs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
