"""Two "hosts" on one server on PostgreSQL: deploy on one, run on the other.

Each host is its own directory with its own ``HEADWAY_HOME`` and working
directories; they share nothing but the server's URL and key, as machines do.
The deploying host's project is not where the worker looks, so a run completes
only if the worker found the code in its own place: its working directory, or
its checkout of the deployment's git repository.

Then, with host A's CLI and host B's worker, what a team relies on: a failing
run makes ``deployment run --wait`` exit non-zero; a cancelled run whose tasks
wait for a slot starts none of them and its final states stay; SIGTERM lets
the run going finish with all its records; a second SIGTERM cancels it, with
its records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.client.base import Client, get_client
from headway.core.limits import SlotGrant
from headway.core.states import StateType
from headway.server.runner import ServerProcess
from headway.settings import get_settings
from helpers.postgres import fresh_postgres
from helpers.waiting import wait_until

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]

FLOW = """
import socket
from pathlib import Path

from headway import flow, get_run_logger


@flow
def etl(parts: int = 3) -> int:
    get_run_logger().info("etl on host %s in %s", HOST, Path.cwd())
    return parts * 10
"""


class Host:
    """A machine: its own HEADWAY_HOME and directories, reaching the server by URL and key."""

    def __init__(self, root: Path, server: ServerProcess, key: str) -> None:
        self.root = root
        (root / "home").mkdir(parents=True)
        self.env = {**os.environ, "HEADWAY_HOME": str(root / "home"),
                    "HEADWAY_API_URL": server.url, "HEADWAY_API_KEY": key}  # fmt: skip
        self.env.pop("HEADWAY_DATABASE_URL", None)

    def project(self, name: str, host: str) -> Path:
        path = self.root / name
        (path / "flows").mkdir(parents=True)
        (path / "flows" / "etl.py").write_text(f"HOST = {host!r}\n" + FLOW)
        return path

    def headway(self, *args: str, cwd: Path, code: int = 0) -> str:
        done = subprocess.run(
            [*CLI, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=90,
            check=False,
        )  # fmt: skip
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    def client(self) -> Client:
        """This host's client (the test's own process speaking as the host)."""
        names = ("HEADWAY_HOME", "HEADWAY_API_URL", "HEADWAY_API_KEY")
        return get_client(get_settings({n: self.env[n] for n in names}))

    def start_worker(self, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            worker = subprocess.Popen(
                [*CLI, "worker", "start", "--pool", "ops", "--no-standby",
                 "--cancel-grace", "600"],
                env=self.env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(lambda: b"started on pool" in log.read_bytes(), "the worker started",
                   alive=worker, log=log)  # fmt: skip
        return worker


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    key = "k-" + uuid.uuid4().hex
    with fresh_postgres() as url:
        server_env = {**os.environ, "HEADWAY_DATABASE_URL": url, "HEADWAY_API_KEY": key,
                      "HEADWAY_HOME": str(tmp_path / "server-home")}  # fmt: skip
        with ServerProcess(server_env, log_path=tmp_path / "server.log") as server:
            yield Host(tmp_path / "host-a", server, key), Host(tmp_path / "host-b", server, key)


def git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_deploy_on_one_host_run_on_the_other(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    a, b = hosts
    laptop = a.project("proj", "a")
    a.headway("work-pool", "create", "etl", cwd=laptop)
    a.headway("deploy", "flows/etl.py:etl", "--name", "nightly", "--pool", "etl", cwd=laptop)
    # The same project published as a git repository (a bare one, as a server holds).
    origin = tmp_path / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(origin), cwd=tmp_path)
    git("init", "--quiet", "--initial-branch=main", cwd=laptop)
    git("add", "-A", cwd=laptop)
    git("commit", "--quiet", "-m", "etl", cwd=laptop)
    git("push", "--quiet", str(origin), "main", cwd=laptop)
    a.headway("deploy", "flows/etl.py:etl", "--name", "from-git", "--pool", "etl",
              "--code-repository", str(origin), "--code-ref", "main", cwd=laptop)  # fmt: skip
    shown = a.headway("deployment", "inspect", "etl/from-git", cwd=laptop)
    assert f"git {origin} at main" in shown
    # Host B has its own copy of the project for the first deployment, and nothing
    # at all for the second: its worker starts in an empty directory.
    checkout = b.project("srv/checkout", "b")
    empty = b.root / "empty"
    empty.mkdir()
    log = b.root / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [*CLI, "worker", "start", "--pool", "etl", "--working-dir", str(checkout)],
            env=b.env, cwd=empty, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        for name in ("etl/nightly", "etl/from-git"):
            ran = a.headway("deployment", "run", name, "--wait", "--timeout", "90", cwd=laptop)
            assert ran.rstrip().endswith(" is Completed"), ran
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    text = log.read_text()
    # The first ran host B's copy in its working directory; the second, host B's own
    # checkout of the repository, in host B's HEADWAY_HOME.
    assert f"etl on host b in {checkout}" in text
    assert f"etl on host a in {b.root / 'home' / 'code'}" in text
    assert not (a.root / "home" / "code").exists()


OPS = """
import os
import time
from pathlib import Path

from headway import flow, get_run_logger, task
from headway.concurrency.sync import concurrency


def marks(name):
    return Path(os.environ["OPS_MARKS"], name)


@task
def step(i):
    get_run_logger().info("step %d done", i)
    return i


@task(tags=["db"])
def needs_db(i):
    marks(f"ran-{i}").write_text("")


@task
def stuck():
    with concurrency("api"):
        marks("stuck").write_text(str(os.getpid()))
        try:
            while True:  # pure Python: interrupted at its next bytecode
                time.sleep(0.02)
        finally:
            marks("stuck-left").write_text("")


@flow
def fails():
    step(0)
    raise RuntimeError("the warehouse is closed")


@flow
def waits():
    futures = [needs_db.submit(i) for i in range(3)]
    return [f.result() for f in futures]


@flow
def slow():
    total = step(0)
    marks("slow-started").write_text("")
    while not marks("go").exists():
        time.sleep(0.02)
    for i in range(1, 4):
        total += step(i)
    return total


@flow
def stopped():
    step(0)
    stuck.submit().result()
"""


def _stopped(worker: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return worker.wait(90)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        raise AssertionError("the worker did not stop:\n" + log.read_text()[-3000:]) from None


def test_cancel_and_stop_across_hosts(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    a, b = hosts
    marks = tmp_path / "marks"
    marks.mkdir()
    laptop, checkout = a.project("proj", "a"), b.project("srv/checkout", "b")
    for project in (laptop, checkout):
        (project / "flows" / "ops.py").write_text(OPS)
    b.env["OPS_MARKS"] = str(marks)
    a.headway("work-pool", "create", "ops", cwd=laptop)
    for fn in ("fails", "waits", "slow", "stopped"):
        a.headway("deploy", f"flows/ops.py:{fn}", "--name", fn, "--pool", "ops", cwd=laptop)
    a.headway("concurrency-limit", "create", "db", "1", cwd=laptop)
    a.headway("gcl", "create", "api", "--limit", "1", cwd=laptop)
    client = a.client()
    log = b.root / "worker.log"
    worker = b.start_worker(checkout, log)
    try:
        # A failing run: `--wait` says so in its exit code (1: FAILED).
        out = a.headway("deployment", "run", "fails/fails", "--wait", "--timeout", "90",
                        cwd=laptop, code=1)  # fmt: skip
        assert " is Failed: RuntimeError: the warehouse is closed" in out, out

        # A run whose tasks wait for a slot host A holds: cancelled, none starts.
        held = client.acquire_slots(["tag:db"], 1)
        assert isinstance(held, SlotGrant) and held.lease_id is not None
        run_id = client.create_deployment_run("waits/waits").id
        wait_until(lambda: len(client.inspect_limit("tag:db").waiters) == 3,
                   "the three tasks wait", alive=worker, log=log)  # fmt: skip
        a.headway("flow-run", "cancel", run_id, cwd=laptop)
        wait_until(lambda: client.read_flow_run(run_id).state.is_final, "the run ended")
        assert client.inspect_limit("tag:db").waiters == ()
        assert client.release_slots(held.lease_id)
        # The slot host A gave back went to nobody of the cancelled run.
        assert client.read_limit("tag:db").active_slots == 0
        again = client.acquire_slots(["tag:db"], 1, timeout=0)
        assert isinstance(again, SlotGrant) and again.lease_id is not None
        assert client.release_slots(again.lease_id)
        run = client.read_flow_run(run_id, with_task_runs=True)
        assert run.state.type is StateType.CANCELLED, run.state
        assert run.task_runs is not None and len(run.task_runs) == 3
        for task_run in run.task_runs:
            history = [s.type for s in client.read_states(task_run.id)]
            assert history == [StateType.PENDING, StateType.CANCELLED], history
        assert [s.type for s in client.read_states(run_id)][-1] is StateType.CANCELLED
        assert not list(marks.glob("ran-*"))

        # SIGTERM mid-run: the worker claims no more and lets the run finish.
        run_id = client.create_deployment_run("slow/slow").id
        wait_until(lambda: (marks / "slow-started").exists(), "the run started",
                   alive=worker, log=log)  # fmt: skip
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: b"stopping: no new runs" in log.read_bytes(), "the drain began")
        (marks / "go").touch()
        assert _stopped(worker, log) == 0
        run = client.read_flow_run(run_id, with_task_runs=True)
        assert run.state.type is StateType.COMPLETED, run.state
        assert sorted(t.state.type.value for t in (run.task_runs or ())) == ["COMPLETED"] * 4
        lines = " ".join(line.message for _, line in client.read_logs(run_id))
        assert all(f"step {i} done" in lines for i in range(4)), lines

        # SIGTERM twice: the run going is cancelled, its task interrupted, all recorded.
        worker = b.start_worker(checkout, log)
        run_id = client.create_deployment_run("stopped/stopped").id
        wait_until(lambda: (marks / "stuck").exists(), "the task runs", alive=worker, log=log)
        worker.send_signal(signal.SIGTERM)
        wait_until(lambda: log.read_bytes().count(b"stopping: no new runs") == 2, "draining")
        worker.send_signal(signal.SIGTERM)
        # (A cancel grace of 600 s: the run ends by itself, it is not killed.)
        assert _stopped(worker, log) == 0
        run = client.read_flow_run(run_id, with_task_runs=True)
        assert run.state.type is StateType.CANCELLED, run.state
        states = {t.name.split("-")[0]: t.state.type for t in (run.task_runs or ())}
        assert states == {"step": StateType.COMPLETED, "stuck": StateType.CANCELLED}, states
        assert "step 0 done" in " ".join(line.message for _, line in client.read_logs(run_id))
        assert (marks / "stuck-left").exists()
        assert client.read_limit("api").active_slots == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
