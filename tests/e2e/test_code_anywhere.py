"""Deployments that run anywhere: entrypoints relative to the project root, resolved by
each worker against its working directory or its checkout of a git repository.

Real ``headway deploy`` and ``headway worker start`` subprocesses; the deploying
"machine" and the worker's "machine" are separate directories, so a run can
only succeed if the worker found the code in its own place.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headway.client.base import get_client
from headway.core.deployments import DeploymentSpec
from headway.core.models import FlowRun
from headway.core.states import StateType
from helpers.processes import CLI, Processes
from helpers.waiting import wait_for_runs, wait_until

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

FLOW = """
from pathlib import Path

from headway.flows import flow


@flow
def etl(out: str) -> str:
    Path(out).write_text(WHO + " " + str(Path.cwd()))
    return WHO
"""


def write_project(root: Path, who: str) -> Path:
    (root / "flows").mkdir(parents=True, exist_ok=True)
    (root / "flows" / "etl.py").write_text(f"WHO = {who!r}\n" + FLOW)
    return root


def headway(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=dict(os.environ), capture_output=True, text=True, timeout=60,
        cwd=cwd, check=False,
    )  # fmt: skip


def ok(*args: str, cwd: Path | None = None) -> str:
    result = headway(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    with Processes(tmp_path) as procs:
        ok("work-pool", "create", "pool")
        yield lambda *args, cwd=None: procs.worker("--pool", "pool", "--no-standby", *args, cwd=cwd)


def run_to_end(name: str, out: Path) -> FlowRun:
    client = get_client()
    run_id = client.create_deployment_run(name, parameters={"out": str(out)}).id
    [run] = wait_for_runs(client, [run_id])
    return run


def inspect(name: str) -> dict[str, object]:
    return dict(json.loads(ok("deployment", "inspect", name, "-o", "json")))


def test_deployed_here_runs_in_the_workers_directory(
    tmp_path: Path, worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    here = write_project(tmp_path / "laptop" / "proj", "laptop")
    there = write_project(tmp_path / "server" / "checkout", "server")
    out = ok("deploy", "flows/etl.py:etl", "--name", "d", "--pool", "pool", cwd=here)
    assert "warning" not in out
    assert inspect("etl/d")["entrypoint"] == "flows/etl.py:etl"
    # The worker starts elsewhere and is pointed at its own copy of the project.
    worker("--working-dir", str(there), cwd=tmp_path)
    result = tmp_path / "out.txt"
    run = run_to_end("etl/d", result)
    assert run.state.type is StateType.COMPLETED, run.state
    assert result.read_text() == f"server {there}"


def test_project_root_option(tmp_path: Path) -> None:
    proj = write_project(tmp_path / "proj", "p")
    ok("work-pool", "create", "pool")
    ok("deploy", "flows/etl.py:etl", "--name", "a", "--pool", "pool", "--project-root", str(proj),
       cwd=tmp_path)  # fmt: skip
    ok("deploy", str(proj / "flows" / "etl.py") + ":etl", "--name", "b", "--pool", "pool",
       "--project-root", str(proj))  # fmt: skip
    assert inspect("etl/a")["entrypoint"] == inspect("etl/b")["entrypoint"] == "flows/etl.py:etl"
    # A file outside the named root cannot be made relative to it.
    other = write_project(tmp_path / "elsewhere", "x")
    outside = headway("deploy", str(other / "flows" / "etl.py") + ":etl", "--name", "c",
                      "--pool", "pool", "--project-root", str(proj))  # fmt: skip
    assert outside.returncode == 2
    assert outside.stderr.startswith(f"Error: {other / 'flows' / 'etl.py'} is outside the project")
    assert len(outside.stderr.strip().splitlines()) == 1
    missing = headway("deploy", "flows/etl.py:etl", "--name", "c", "--pool", "pool",
                      "--project-root", str(tmp_path / "nope"))  # fmt: skip
    assert missing.returncode == 2 and "--project-root: no such directory" in missing.stderr
    # Outside the current directory without --project-root: stored absolute, with a warning.
    legacy = headway("deploy", str(other / "flows" / "etl.py") + ":etl", "--name", "abs",
                     "--pool", "pool", cwd=proj)  # fmt: skip
    assert legacy.returncode == 0, legacy.stderr
    assert "runs only where that path exists" in legacy.stderr
    assert inspect("etl/abs")["entrypoint"] == f"{other / 'flows' / 'etl.py'}:etl"
    table = ok("deployment", "inspect", "etl/abs")
    assert "on the worker's machine (an absolute path)" in table
    assert "the worker's working directory" in ok("deployment", "inspect", "etl/a")


def test_a_run_that_cannot_find_its_code_fails_naming_the_path(
    tmp_path: Path, worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    here = write_project(tmp_path / "proj", "p")
    ok("deploy", "flows/etl.py:etl", "--name", "d", "--pool", "pool", cwd=here)
    empty = tmp_path / "empty"
    empty.mkdir()
    worker(cwd=empty)  # default working directory: where it starts
    run = run_to_end("etl/d", tmp_path / "out.txt")
    assert run.state.type is StateType.FAILED
    message = run.state.message or ""
    assert message == (
        f"cannot find the flow's code: no such file {empty / 'flows' / 'etl.py'}"
        f" (entrypoint flows/etl.py relative to {empty})"
    )
    log = tmp_path / "worker-0.log"
    # The worker echoes its run's output through a pipe: it may land just after the run ends.
    wait_until(lambda: f"Error: {message}" in log.read_text(), "the worker echoed the error")
    assert "Traceback" not in log.read_text()


def test_an_absolute_entrypoint_of_an_older_deployment_keeps_working(
    tmp_path: Path, worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    proj = write_project(tmp_path / "proj", "old")
    get_client().apply_deployment(
        DeploymentSpec(
            flow_name="etl", name="old", entrypoint=f"{proj}/flows/etl.py:etl", work_pool="pool"
        )
    )
    elsewhere = tmp_path / "wd"
    elsewhere.mkdir()
    worker("--working-dir", str(elsewhere))
    out = tmp_path / "out.txt"
    assert run_to_end("etl/old", out).state.type is StateType.COMPLETED
    assert out.read_text().startswith("old ")


def test_bad_working_dir_is_one_line_exit_2(tmp_path: Path) -> None:
    ok("work-pool", "create", "pool")
    result = headway("worker", "start", "--pool", "pool", "--working-dir", str(tmp_path / "no"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: --working-dir: no such directory: {tmp_path / 'no'}"


# -- a git repository as the code source ------------------------------------------------
def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    }  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository holding the project (branch ``main``), and a clone to push from."""
    bare = tmp_path / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    clone = tmp_path / "dev"
    git("clone", "--quiet", str(bare), str(clone), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "main", cwd=clone)
    write_project(clone, "v1")
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "v1", cwd=clone)
    git("tag", "v1", cwd=clone)
    git("push", "--quiet", "origin", "main", "v1", cwd=clone)
    return bare, clone


def test_code_from_a_git_repository_updated_before_each_run(
    tmp_path: Path,
    repository: tuple[Path, Path],
    worker: Callable[..., subprocess.Popen[bytes]],
    headway_home: Path,
) -> None:
    bare, clone = repository
    ok("deploy", "flows/etl.py:etl", "--name", "git", "--pool", "pool",
       "--code-repository", str(bare), "--code-ref", "main", cwd=clone)  # fmt: skip
    ok("deploy", "flows/etl.py:etl", "--name", "pinned", "--pool", "pool",
       "--code-repository", str(bare), "--code-ref", "v1", cwd=clone)  # fmt: skip
    # From a subdirectory of the checkout: still relative to the repository's root.
    ok("deploy", "etl.py:etl", "--name", "sub", "--pool", "pool",
       "--code-repository", str(bare), cwd=clone / "flows")  # fmt: skip
    assert inspect("etl/sub")["entrypoint"] == "flows/etl.py:etl"
    shown = inspect("etl/git")
    assert (shown["code_repository"], shown["code_ref"]) == (str(bare), "main")
    assert f"git {bare} at main" in ok("deployment", "inspect", "etl/git")
    # The worker's directory has no copy: the code can only come from the repository.
    empty = tmp_path / "worker-dir"
    empty.mkdir()
    worker(cwd=empty)
    out = tmp_path / "out.txt"
    first = run_to_end("etl/git", out)
    assert first.state.type is StateType.COMPLETED, first.state
    who, cwd = out.read_text().split(" ", 1)
    assert who == "v1"
    # The run ran in a checkout under HEADWAY_HOME, named by its commit.
    assert Path(cwd).parent.parent == headway_home / "code"
    assert Path(cwd).name == git("rev-parse", "main", cwd=clone)
    # A new commit on the branch: the next run fetches it; the pinned tag stays put.
    write_project(clone, "v2")
    git("commit", "--quiet", "-am", "v2", cwd=clone)
    git("push", "--quiet", "origin", "main", cwd=clone)
    assert run_to_end("etl/git", out).state.type is StateType.COMPLETED
    assert out.read_text().startswith("v2 ")
    assert run_to_end("etl/pinned", out).state.type is StateType.COMPLETED
    assert out.read_text().startswith("v1 ")


def test_an_unknown_ref_fails_the_run_in_one_line(
    tmp_path: Path,
    repository: tuple[Path, Path],
    worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    bare, clone = repository
    ok("deploy", "flows/etl.py:etl", "--name", "bad", "--pool", "pool",
       "--code-repository", str(bare), "--code-ref", "nope", cwd=clone)  # fmt: skip
    ok("deploy", "flows/etl.py:etl", "--name", "gone", "--pool", "pool",
       "--code-repository", str(tmp_path / "gone.git"), cwd=clone)  # fmt: skip
    worker(cwd=tmp_path)
    bad = run_to_end("etl/bad", tmp_path / "out.txt")
    assert bad.state.type is StateType.FAILED
    assert bad.state.message == (
        f"cannot get the flow's code from {bare} at nope: no branch, tag or commit named 'nope'"
    )
    gone = run_to_end("etl/gone", tmp_path / "out.txt")
    assert gone.state.type is StateType.FAILED
    message = gone.state.message or ""
    assert message.startswith(f"cannot get the flow's code from {tmp_path / 'gone.git'} at HEAD: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--code-ref", "main"), "a code ref needs a code repository"),
        (("--code-repository", "--upload-pack=evil"), "invalid code repository"),
        (("--code-repository", "/r.git", "--code-ref", "-x"), "invalid code ref"),
        (("--code-repository", "/r.git", "--code-ref", "a b"), "invalid code ref"),
    ],
)
def test_bad_code_source_is_one_line_exit_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    proj = write_project(tmp_path / "proj", "p")
    ok("work-pool", "create", "pool")
    result = headway("deploy", "flows/etl.py:etl", "--name", "d", "--pool", "pool", *args,
                     cwd=proj)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


SERVED = """
import sys
from pathlib import Path

from headway.flows import flow


@flow
def job(out: str) -> None:
    Path(out).write_text(str(Path.cwd()))


if __name__ == "__main__":
    job.serve(name="s", project_root=sys.argv[1])
"""


def test_serve_stores_the_entrypoint_relative_to_its_project_root(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "flows").mkdir(parents=True)
    (proj / "flows" / "served.py").write_text(SERVED)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(proj / "flows" / "served.py"), str(proj)],
        env=dict(os.environ), cwd=elsewhere, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    try:
        client = get_client()
        wait_until(
            lambda: any(d.full_name == "job/s" for d in client.list_deployments()),
            "serve() registered its deployment",
            alive=proc,
            log=tmp_path / "serve.log",
        )
        assert client.read_deployment("job/s").entrypoint == "flows/served.py:job"
        out = tmp_path / "out.txt"
        assert run_to_end("job/s", out).state.type is StateType.COMPLETED
        # The run started in the project root, where the relative entrypoint points.
        assert out.read_text() == str(proj)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
