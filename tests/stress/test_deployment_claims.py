"""Claims under contention: several claimers, finishing at random, never exceed a limit."""

from __future__ import annotations

import random
import threading
import time

from headway.client.factory import embedded_client
from headway.core.deployments import DeploymentSpec
from headway.core.states import Completed, StateType
from headway.settings import get_settings

RUNS = 120
DEPLOYMENT_LIMIT = 2
POOL_LIMIT = 3


def test_limits_hold_under_concurrent_claims() -> None:
    setup = embedded_client(get_settings())
    setup.create_work_pool("pool", concurrency_limit=POOL_LIMIT)
    for name, limit in (("a", DEPLOYMENT_LIMIT), ("b", None)):
        setup.apply_deployment(
            DeploymentSpec(flow_name="f", name=name, work_pool="pool", concurrency_limit=limit)
        )
    for i in range(RUNS):
        setup.create_deployment_run("f/a" if i % 2 else "f/b")
    claimed: list[str] = []
    violations: list[str] = []
    lock = threading.Lock()
    active: dict[str, str] = {}  # run id -> deployment, as the claimers see it

    def claimer(seed: int) -> None:
        rng = random.Random(seed)
        client = embedded_client(get_settings())
        worker = client.register_worker("pool", f"w{seed}")
        assert worker.id is not None
        mine: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = client.claim_flow_runs(worker.id, pool="pool", limit=2)
            with lock:
                for item in got:
                    claimed.append(item.run.id)
                    active[item.run.id] = item.run.deployment or ""
                in_a = sum(1 for d in active.values() if d == "f/a")
                if in_a > DEPLOYMENT_LIMIT:
                    violations.append(f"{in_a} runs of f/a at once")
                if len(active) > POOL_LIMIT:
                    violations.append(f"{len(active)} runs in the pool at once")
            mine.extend(i.run.id for i in got)
            if mine and (rng.random() < 0.7 or not got):
                done = mine.pop(rng.randrange(len(mine)))
                with lock:
                    active.pop(done, None)
                # Counted out before it ends: a claim right after may see its slot free.
                client.set_flow_run_state(done, Completed())
            with lock:
                if len(claimed) >= RUNS and not mine:
                    break
        for run_id in mine:
            with lock:
                active.pop(run_id, None)
            client.set_flow_run_state(run_id, Completed())
        client.close()

    threads = [threading.Thread(target=claimer, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert violations == []
    assert len(claimed) == len(set(claimed)) == RUNS
    states = {r.state.type for r in setup.list_flow_runs(limit=RUNS + 10)}
    assert states == {StateType.COMPLETED}
    assert setup.read_limit("deployment:f/a").active_slots == 0
    assert setup.read_limit("pool:pool").active_slots == 0
    setup.close()
