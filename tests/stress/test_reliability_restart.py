"""A server SIGKILLed under load and started again: nothing lost, clients go on by themselves.

Client processes run real flows through the server, one after another: each
flow logs lines, runs tasks and holds a slot of a global limit. While they run,
the server process is killed with SIGKILL and started again on the same port
a moment later. Afterwards:

- every client process ended normally: no flow failed because of the outage
  (the clients retried on their own; nobody restarted them);
- every flow run a client saw complete is COMPLETED in the store, with its
  state changes (PENDING/RUNNING/COMPLETED), its task runs and every one of its
  log lines;
- the limit is still there, unchanged, with no slot left taken.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from headway.client.http import HttpClient
from headway.core.states import StateType
from headway.server.runner import ServerProcess, free_port
from headway.settings import get_settings
from helpers.waiting import wait_until

#: Sizes of the CI run; benchmarks/bench_reliability_faults.py (server-kill) runs more.
CLIENTS = int(os.environ.get("HEADWAY_RESTART_CLIENTS", "3"))
KILLS = int(os.environ.get("HEADWAY_RESTART_KILLS", "1"))
LINES = 4
TASKS = 2
#: Far longer than any outage here. A holder renews every third of its lease, so
#: it keeps its slot through an outage (kill, pause, restart, first renewal) of up
#: to two thirds of the lease; shorter leases made a slow restart on a loaded CI
#: machine a legitimate LeaseLostError, not a lost write. A grant whose answer the
#: kill swallowed keeps its slot until its lease expires and the next sweep (a
#: quarter lease) reaps it: at most 25 s with the limit of 2 taken, well inside
#: the waits below.
LEASE = 20.0
#: Where to write what was checked (read by the benchmark).
REPORT = os.environ.get("HEADWAY_RESTART_REPORT")

CLIENT = """
import json, sys, time
from pathlib import Path

from headway import flow, get_run_logger, task
from headway.concurrency.sync import concurrency
from headway.context import get_flow_run_context

out, stop = Path(sys.argv[1]), Path(sys.argv[2])


@task
def step(i: int) -> int:
    get_run_logger().info("task step %d", i)
    return i


@flow
def work(lines: int, tasks: int) -> str:
    run_id = get_flow_run_context().flow_run_id
    log = get_run_logger()
    for i in range(lines):
        log.info("%s line %d", run_id, i)
    with concurrency("db", occupy=1):
        total = sum(step(i) for i in range(tasks))
    time.sleep(0.05)
    return run_id


while not stop.exists():
    run_id = work(int(sys.argv[3]), int(sys.argv[4]))
    with open(out, "a") as fh:
        fh.write(json.dumps({"run": run_id, "at": time.time()}) + "\\n")
"""


def completed_runs(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_server_killed_under_load_loses_nothing_and_clients_go_on(
    headway_home: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HEADWAY_HOME": str(headway_home),
        "HEADWAY_CONCURRENCY_LEASE_SECONDS": str(LEASE),
    }
    server = ServerProcess(env, port=port, log_path=tmp_path / "server.log").start()
    admin = HttpClient(get_settings({**env, "HEADWAY_API_URL": server.url}), retry_seconds=60)
    procs: list[subprocess.Popen[bytes]] = []
    stop = tmp_path / "stop"
    outs = [tmp_path / f"client{i}.jsonl" for i in range(CLIENTS)]
    try:
        admin.create_limit("db", 2)
        client_env = {**env, "HEADWAY_API_URL": server.url}
        for out in outs:
            # stderr to a file: warnings during the outage must never fill a pipe.
            with open(out.with_suffix(".log"), "w") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", CLIENT, str(out), str(stop), str(LINES),
                         str(TASKS)],
                        env=client_env,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )  # fmt: skip

        def stderr_of(i: int) -> str:
            return outs[i].with_suffix(".log").read_text()[-3000:]

        outages: list[float] = []

        def each_completed_since(moment: float, n: int) -> bool:
            ended = [i for i, p in enumerate(procs) if p.poll() is not None]
            if ended:
                raise AssertionError(
                    f"a client process ended early (outages of {outages} s,"
                    f" leases of {LEASE} s): {stderr_of(ended[0])}"
                )
            return all(
                sum(1 for r in completed_runs(out) if float(str(r["at"])) > moment) >= n
                for out in outs
            )

        last = 0.0
        for kill in range(KILLS):
            # Two flows per client since the last restart, then the next crash.
            wait_until(
                lambda t=last: each_completed_since(t, 2), f"flows before kill {kill}", timeout=180
            )
            server.kill()
            last = time.time()
            killed = time.monotonic()
            threading.Event().wait(1.0)  # the outage itself
            server = ServerProcess(env, port=port, log_path=tmp_path / f"server{kill}.log")
            server.start()
            outages.append(round(time.monotonic() - killed, 1))
        # Every client completes two more flows after the last restart, by itself.
        wait_until(
            lambda: each_completed_since(last, 2), "flows after the last restart", timeout=180
        )
        stop.touch()
        for proc in procs:
            proc.wait(120)
        failures = [(p.returncode, stderr_of(i)) for i, p in enumerate(procs) if p.returncode]
        assert not failures, failures
        runs = [r["run"] for out in outs for r in completed_runs(out)]
        assert len(runs) >= 2 * CLIENTS * (KILLS + 1)
        missing: list[str] = []
        checked = {"runs": 0, "states": 0, "task_runs": 0, "log_lines": 0}
        for run_id in runs:
            assert isinstance(run_id, str)
            run = admin.read_flow_run(run_id)
            if run.state.type is not StateType.COMPLETED:
                missing.append(f"{run_id}: {run.state.type}")
            states = [s.type for s in admin.read_states(run_id)]
            if states[-1:] != [StateType.COMPLETED] or StateType.RUNNING not in states:
                missing.append(f"{run_id}: states {states}")
            tasks = admin.read_task_runs(run_id)
            if len(tasks) != TASKS or any(t.state.type is not StateType.COMPLETED for t in tasks):
                missing.append(f"{run_id}: task runs {[(t.name, t.state.type) for t in tasks]}")
            messages = [record.message for _, record in admin.read_logs(run_id)]
            for i in range(LINES):
                if f"{run_id} line {i}" not in messages:
                    missing.append(f"{run_id}: log line {i} lost")
            if sum(m.startswith("task step") for m in messages) < TASKS:
                missing.append(f"{run_id}: task log lines lost")
            checked["runs"] += 1
            checked["states"] += len(states)
            checked["task_runs"] += len(tasks)
            checked["log_lines"] += len(messages)
        assert not missing, missing
        limit = admin.read_limit("db")
        assert (limit.limit, limit.active) == (2, True)
        wait_until(lambda: admin.read_limit("db").active_slots == 0, "every slot back", timeout=60)
        if REPORT:
            Path(REPORT).write_text(json.dumps({"kills": KILLS, "clients": CLIENTS, **checked}))
    finally:
        stop.touch()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        admin.close()
        server.stop()
