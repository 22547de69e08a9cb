"""Two "hosts" on one server on PostgreSQL: deploy on one, run on the other.

Each host is its own directory with its own ``HEADWAY_HOME`` and working
directories; they share nothing but the server's URL and key, as machines do.
The deploying host's project is not where the worker looks, so a run completes
only if the worker found the code in its own place: its working directory, or
its checkout of the deployment's git repository.
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

from headway.server.runner import ServerProcess
from helpers.postgres import fresh_postgres

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

    def headway(self, *args: str, cwd: Path) -> str:
        done = subprocess.run(
            [*CLI, *args], env=self.env, cwd=cwd, capture_output=True, text=True, timeout=90,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


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
