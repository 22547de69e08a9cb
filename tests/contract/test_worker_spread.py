"""Runs spread across workers: a worker claims no more runs than it has room for.

Real ``headway worker start`` subprocesses. Every run blocks until the test
releases it, so which worker holds which run is read from the runs themselves
once all of them have started, not inferred from timing.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.core.deployments import DeploymentSpec
from headway.core.states import StateType
from helpers.processes import Processes
from helpers.waiting import wait_until

WORKER_BACKENDS = ("embedded-sqlite", "server-postgres")

FLOWS = """
import os
import time
from pathlib import Path

from headway.flows import flow


@flow
def held(marker_dir: str, name: str):
    d = Path(marker_dir)
    d.mkdir(parents=True, exist_ok=True)
    # Which worker runs this run: the worker's pid, which it hands to its run processes.
    (d / f"{name}.tmp").write_text(os.environ["HEADWAY_WORKER_PID"])
    (d / f"{name}.tmp").rename(d / f"{name}.started")
    deadline = time.time() + 60
    while not (d / "release").exists():
        if time.time() > deadline:
            raise RuntimeError("never released")
        time.sleep(0.05)
"""


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    with Processes(tmp_path) as procs:
        yield lambda *args: procs.worker("--pool", "pool", "--cancel-grace", "0.5", *args)


def burst(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path, *worker_args: list[str]
) -> tuple[Any, list[str], Path, list[subprocess.Popen[bytes]]]:
    """Idle workers, then ten runs at once; returns once every worker is registered."""
    if backend_name not in WORKER_BACKENDS:
        pytest.skip("worker processes are tested on embedded-sqlite and server-postgres")
    client = request.getfixturevalue("backend").client
    start = request.getfixturevalue("workers")
    flows = tmp_path / "flows.py"
    flows.write_text(FLOWS)
    client.create_work_pool("pool")
    full = client.apply_deployment(
        DeploymentSpec(flow_name="held", name="d", entrypoint=f"{flows}:held", work_pool="pool")
    ).full_name
    procs = [start(*args) for args in worker_args]
    wait_until(lambda: len(client.list_workers("pool")) == len(procs), "workers registered")
    markers = tmp_path / "m"
    runs = [
        client.create_deployment_run(
            full, parameters={"marker_dir": str(markers), "name": f"r{i}"}
        ).id
        for i in range(10)
    ]
    return client, runs, markers, procs


def holders(markers: Path) -> Counter[int]:
    """How many started runs each worker (by pid) holds."""
    return Counter(int(p.read_text()) for p in markers.glob("*.started"))


def release_and_finish(client: Any, runs: list[str], markers: Path) -> None:
    (markers / "release").touch()
    wait_until(lambda: all(client.read_flow_run(r).state.is_final for r in runs), "runs finished")
    assert [client.read_flow_run(r).state.type for r in runs] == [StateType.COMPLETED] * 10


def test_two_idle_workers_share_a_burst_of_ten(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    # No --limit: the documented default (HEADWAY_WORKER_LIMIT, 5) applies.
    client, runs, markers, procs = burst(request, backend_name, tmp_path, [], [])
    # Every run blocks until released: all ten start only if both workers took some.
    wait_until(lambda: len(list(markers.glob("*.started"))) == 10, "all ten runs started")
    counts = holders(markers)
    assert set(counts) == {p.pid for p in procs}
    assert all(3 <= n <= 7 for n in counts.values()), counts
    assert all(n <= 5 for n in counts.values()), counts
    release_and_finish(client, runs, markers)


def test_a_worker_limit_caps_what_it_claims(
    request: pytest.FixtureRequest, backend_name: str, tmp_path: Path
) -> None:
    client, runs, markers, procs = burst(
        request, backend_name, tmp_path, ["--limit", "2"], ["--limit", "3"]
    )
    wait_until(lambda: len(list(markers.glob("*.started"))) == 5, "five runs started")
    # Five are held; the others wait in the pool, claimed by no one.
    waiting = [r for r in runs if client.read_flow_run(r).state.type is StateType.SCHEDULED]
    assert len(waiting) == 5
    counts = holders(markers)
    assert counts == Counter({procs[0].pid: 2, procs[1].pid: 3})
    release_and_finish(client, runs, markers)
