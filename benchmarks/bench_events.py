"""What recording slot events costs, and how fast ``why`` answers with a long queue.

1. Uncontended acquire+release pairs on the embedded store, rounds alternating
   with slot events recorded (as shipped: buffered, written every 0.2 s) and
   with them switched off, in one process. Both CPU time per pair (all threads
   of the process, so the flusher thread counts) and pairs/s are printed; on a
   busy machine the CPU figure is the one to compare.
2. ``explain_run`` on the last of ``--waiters`` requests queued on one limit.

    python benchmarks/bench_events.py [--pairs 2000] [--rounds 8] [--waiters 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--waiters", type=int, default=1000)
    args = parser.parse_args()
    os.environ["HEADWAY_HOME"] = tempfile.mkdtemp(prefix="headway-bench-")
    os.environ.pop("HEADWAY_API_URL", None)
    os.environ.pop("HEADWAY_DATABASE_URL", None)
    from headway.client.base import get_client
    from headway.core.limits import SlotGrant
    from headway.store.events import Events

    client = get_client()
    client.create_limit("db", 10)
    recording = Events._queue

    def switched_off(self: Events, item: object) -> None:
        return None

    modes = {"events off": switched_off, "events on": recording}
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    holder = str(uuid.uuid4())
    for _ in range(args.rounds):
        for mode, buffer_events in modes.items():
            Events._queue = buffer_events  # type: ignore[method-assign]
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.pairs):
                grant = client.acquire_slots(["db"], 1, holder_id=holder)
                assert isinstance(grant, SlotGrant)
                client.release_slots(grant.lease_id)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            results[mode].append((cpu / args.pairs * 1e6, args.pairs / wall))
    Events._queue = recording  # type: ignore[method-assign]
    print(f"acquire+release pairs, embedded SQLite ({args.rounds} rounds of {args.pairs})")
    for mode, rows in results.items():
        cpu_us = statistics.median(r[0] for r in rows)
        rate = statistics.median(r[1] for r in rows)
        print(f"  {mode:<10}  median {cpu_us:6.1f} us CPU/pair   median {rate:7.0f} pairs/s")
    off = statistics.median(r[0] for r in results["events off"])
    on = statistics.median(r[0] for r in results["events on"])
    print(f"  slot events cost {on - off:+.1f} us CPU per pair ({(on / off - 1) * 100:+.1f}%)")
    recorded = client.read_events(limit_name="db", kind="slot", limit=10_000).events
    print(f"  slot events readable after the runs: {len(recorded)} (newest 10000 at most)")

    client.create_limit("queue", 1)
    held = client.acquire_slots(["queue"], 1, holder_id="holder")
    assert isinstance(held, SlotGrant)
    store = client.store  # type: ignore[attr-defined]
    from headway._process import current_process

    last = ""
    for i in range(args.waiters):
        last = str(uuid.uuid4())
        store.slots.acquire_slots(
            ["queue"], 1, mode="concurrency", priority=0, holder_kind="code", holder_id=last,
            process=current_process(), lease_seconds=60.0, waiter_id=f"w{i}", new_waiter=True,
            may_queue=True, wake_address=None,
        )  # fmt: skip
    times = []
    for _ in range(20):
        started = time.perf_counter()
        answer = client.explain_run(last)
        times.append(time.perf_counter() - started)
    assert answer.blockers[0].position == args.waiters
    print(
        f"explain_run of request #{args.waiters} in a queue of {args.waiters}:"
        f" median {statistics.median(times) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
