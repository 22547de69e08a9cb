"""``flow.serve()`` as users run it: a script serving a scheduled deployment until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from headway.client.base import get_client
from headway.core.states import StateType
from helpers.waiting import wait_until

SCRIPT = """
import sys
import time

from headway.flows import flow


@flow
def tick(seconds: float = 0.2):
    time.sleep(seconds)


if __name__ == "__main__":
    tick.serve(name="ticker", interval=1, parameters={"seconds": float(sys.argv[1])})
"""


CLI = [sys.executable, "-c", "from headway.cli import run; run()"]


def serve(tmp_path: Path, seconds: float, log_name: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "served.py"
    script.write_text(SCRIPT)
    log = open(tmp_path / log_name, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(script), str(seconds)],
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def states() -> Counter[str]:
    runs = get_client().list_flow_runs(limit=1000, deployment="tick/ticker")
    return Counter(r.state.type.value for r in runs)


def test_serve_runs_its_schedule_and_stops_cleanly(tmp_path: Path) -> None:
    proc = serve(tmp_path, 0.2, "serve-1.log")
    try:
        wait_until(lambda: states()["COMPLETED"] >= 2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0, (tmp_path / "serve-1.log").read_text()[-2000:]
    after = states()
    # A clean stop: nothing left RUNNING or PENDING (a run cut short is CANCELLED).
    assert after["RUNNING"] == after["PENDING"] == 0
    assert after["CANCELLING"] == 0
    assert get_client().read_deployment("tick/ticker").work_pool is None


def test_serve_restarted_never_duplicates_a_scheduled_run(tmp_path: Path) -> None:
    first = serve(tmp_path, 5.0, "serve-1.log")
    try:
        wait_until(lambda: states()["RUNNING"] >= 1)
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    assert first.returncode == 0, (tmp_path / "serve-1.log").read_text()[-2000:]
    assert states()["RUNNING"] == 0
    second = serve(tmp_path, 0.1, "serve-2.log")
    try:
        wait_until(lambda: states()["COMPLETED"] >= 2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    runs = get_client().list_flow_runs(limit=1000, deployment="tick/ticker")
    times = [r.expected_start_time for r in runs]
    assert len(times) == len(set(times))  # one run per scheduled time, across the restart
    assert None not in times
    assert all(r.state.type is not StateType.RUNNING for r in runs)


def test_a_worker_told_to_stop_while_its_server_is_down_stops_at_once(
    headway_home: Path, tmp_path: Path
) -> None:
    from headway.server.runner import ServerProcess

    env = {**os.environ, "HEADWAY_HOME": str(headway_home)}
    server = ServerProcess(env, log_path=tmp_path / "server.log").start()
    worker_env = {**env, "HEADWAY_API_URL": server.url}
    try:
        created = subprocess.run(
            [*CLI, "work-pool", "create", "p"],
            env=worker_env,
            capture_output=True,
        )
        assert created.returncode == 0, created.stderr
        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [*CLI, "worker", "start", "--pool", "p"],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            lambda: b"started" in (tmp_path / "worker.log").read_bytes(),
            "the worker started",
            alive=worker,
            log=tmp_path / "worker.log",
        )
    finally:
        server.kill()
    # The server is gone: every call the worker makes would be retried for its
    # retry window (15 s). Told to stop, it must not sit those windows out.
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(
            "the worker was still running 10 s after SIGTERM:\n"
            + (tmp_path / "worker.log").read_text(errors="replace")[-2000:]
        ) from None
    assert b"stopped" in (tmp_path / "worker.log").read_bytes()
