"""Claim latency with 1,000 and with 100,000 scheduled runs in the store.

A worker's claim is one transaction; it must not slow down as runs pile up.
Two shapes of backlog, each at every size:

- ``due``: every run is due (a backlog of work): each claim takes the oldest;
- ``ahead``: the runs are scheduled in the future (created ahead by the
  scheduler) and only the ones claimed are due;
- ``blocked``: the runs wait on a full deployment limit (ENQUEUE) and the
  claims take another deployment's runs past them.

Prints the median and p95 latency of ``claim_flow_runs(limit=1)`` per size and
shape, and the ratio of the largest size's median to the smallest's (the goal:
within 1.5x). On PostgreSQL the table is vacuumed and analysed after the bulk
load, as autovacuum soon would.

    python benchmarks/bench_claim.py [--store sqlite|postgres] [--sizes 1000,100000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_server_setup import percentile, store

SHAPES = ("due", "ahead", "blocked")


def fill(orch: Any, size: int, shape: str, claims: int) -> None:
    """Put ``size`` scheduled runs of the shape in the store (one transaction per 5,000)."""
    now = time.time()
    st = orch.store
    made = 0
    while made < size:
        with st.db.write() as tx:
            for _ in range(min(5_000, size - made)):
                if shape == "due":
                    expected, dep = now - 3600 + made * 0.001, "flow/bulk"
                elif shape == "ahead":
                    expected, dep = now + 3600 + made, "flow/bulk"
                else:
                    expected, dep = now - 3600 + made * 0.001, "flow/limited"
                run = st._insert_run(
                    tx, str(uuid.uuid4()), dep, "flow", f"r{made}", {}, (), "pool",
                    "default", expected, 0, None, None, now,
                )  # fmt: skip
                assert run is not None
                if shape == "blocked":
                    tx.execute(
                        "UPDATE flow_runs SET blocked_on = :b, state_name = :n WHERE id = :id",
                        {"b": "deployment:flow/limited", "n": "AwaitingConcurrencySlot",
                         "id": run.id},
                    )  # fmt: skip
                made += 1
    if shape in ("ahead", "blocked"):
        # The runs the claims take: due now, behind the whole backlog.
        for _ in range(claims + 5):
            orch.create_deployment_run("flow/other")


def prepare(env: dict[str, str], size: int, shape: str, claims: int) -> tuple[Any, str]:
    """A client on a store holding ``size`` runs of the shape, and a registered worker."""
    from headway.client.factory import embedded_client
    from headway.core.deployments import DeploymentSpec
    from headway.orchestrator import Orchestrator
    from headway.settings import get_settings

    client = embedded_client(get_settings(env))
    assert isinstance(client, Orchestrator)
    orch = client
    orch.create_work_pool("pool")
    for name, limit in (("bulk", None), ("other", None), ("limited", 1)):
        orch.apply_deployment(
            DeploymentSpec(flow_name="flow", name=name, work_pool="pool", concurrency_limit=limit)
        )
    if shape == "blocked":
        # The limited deployment's slot is taken: its backlog waits.
        orch.create_deployment_run("flow/limited")
        holder = orch.register_worker("pool", "holder")
        assert orch.claim_flow_runs(holder.id, pool="pool", limit=1)
    fill(orch, size, shape, claims)
    if env.get("HEADWAY_DATABASE_URL", "").startswith("postgresql"):
        # What autovacuum does to a table soon after a bulk load: statistics, and
        # no dead row versions left by the set-up's updates.
        import psycopg

        url = env["HEADWAY_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE flow_runs")
    worker = orch.register_worker("pool", "bench")
    assert worker.id is not None
    for _ in range(5):  # warm caches and connections
        orch.claim_flow_runs(worker.id, pool="pool", limit=1)
    return client, worker.id


def measure(kind: str, sizes: list[int], shape: str, claims: int) -> dict[int, list[float]]:
    """Claim latencies per size; the sizes take turns, so load on the machine hits all alike."""
    with contextlib.ExitStack() as stack:
        prepared = {
            size: prepare(stack.enter_context(store(kind)), size, shape, claims) for size in sizes
        }
        latencies: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(claims):
            for size, (client, worker) in prepared.items():
                start = time.perf_counter()
                got = client.claim_flow_runs(worker, pool="pool", limit=1)
                latencies[size].append(time.perf_counter() - start)
                assert len(got) == 1, "nothing to claim: the backlog is too small"
        for client, _ in prepared.values():
            client.close()
        return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = [s for s in args.shapes.split(",") if s]
    print(f"claim latency, store={args.store}, {args.claims} claims of 1 run each per size")
    print(f"{'scheduled runs':>15} {'shape':>8} {'median ms':>10} {'p95 ms':>8}")
    medians: dict[tuple[str, int], float] = {}
    for shape in shapes:
        by_size = measure(args.store, sizes, shape, args.claims)
        for size in sizes:
            lat = by_size[size]
            med = statistics.median(lat) * 1000
            medians[(shape, size)] = med
            print(f"{size:>15,} {shape:>8} {med:>10.2f} {percentile(lat, 0.95) * 1000:>8.2f}")
    if len(sizes) > 1:
        for shape in shapes:
            ratio = medians[(shape, sizes[-1])] / medians[(shape, sizes[0])]
            print(
                f"{shape}: median at {sizes[-1]:,} / at {sizes[0]:,} = {ratio:.2f}x (goal <= 1.5x)"
            )


if __name__ == "__main__":
    main()
