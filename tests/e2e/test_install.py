"""The default install is the whole product; optional extras fail in one line.

The sdist built from this tree, and the wheel built from that sdist, are
checked; the wheel is installed in a fresh virtualenv outside it,
and from there runs a flow on the embedded store and serves the dashboard:
what ``pip install headway`` gives a user. A feature whose extra is missing
(PostgreSQL, Dask) stops with one line naming the command that installs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import httpx
import pytest

from headway.server.runner import free_port, wait_healthy

REPO = Path(__file__).resolve().parents[2]

FLOW = """
from headway import flow, task


@task
def double(n: int) -> int:
    return 2 * n


@flow
def wheel_check(count: int = 3) -> int:
    return sum(f.result() for f in double.map(range(count)))


print("total", wheel_check())
"""


def _without_extra(
    module: str, *argv: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    # The CLI in a process where ``module`` cannot be imported (as if never installed).
    code = (
        f"import sys; sys.modules[{module!r}] = None; "
        "from headway.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_postgres_without_its_extra_is_one_line(headway_home: Path) -> None:
    env = {
        **os.environ,
        "HEADWAY_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    }
    env.pop("HEADWAY_API_URL", None)
    for argv in (("flow-run", "ls"), ("server", "start", "--port", str(free_port()))):
        done = _without_extra("psycopg", *argv, env=env)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines == [
            "Error: PostgreSQL needs an optional extra: pip install 'headway[postgres]'"
        ]


def test_dask_without_its_extra_names_its_install_command() -> None:
    code = """
import sys
sys.modules["distributed"] = None
from headway.exceptions import MissingExtra
from headway.task_runners import DaskTaskRunner
try:
    DaskTaskRunner().start()
except MissingExtra as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "DaskTaskRunner needs an optional extra: pip install 'headway[dask]'"
    )


def _run(argv: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=400, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_installed_alone_runs_a_flow_and_serves_the_dashboard(tmp_path: Path) -> None:
    # The sdist, then the wheel built from it: both must hold what headway needs
    # at run time (migrations, dashboard assets, py.typed).
    # Built with this environment's backend (the dev extras pin it): an isolated
    # build would install setuptools twice over, each run.
    wheels = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "-o", wheels, REPO])
    [sdist] = wheels.glob("headway-*.tar.gz")
    [wheel] = wheels.glob("headway-*.whl")
    with tarfile.open(sdist) as archive:
        packed = {Path(*Path(n).parts[1:]).as_posix() for n in archive.getnames()}
    for needed in ("src/headway/py.typed", "src/headway/ui/index.html", "pyproject.toml"):
        assert needed in packed, needed
    assert any(n.startswith("src/headway/store/migrations/versions/0001") for n in packed)
    # A fresh virtualenv, given the wheel and what it declares it needs. This
    # environment's pip installs into it (``--python``): bootstrapping a pip of
    # its own, and compiling every dependency's bytecode, cost most of the
    # test's time and check nothing of headway's.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python"]
    _run([*pip, "install", "-q", "--no-compile", wheel])
    _run([*pip, "check"])
    # Outside the source tree, with nothing of it on the path.
    place = tmp_path / "elsewhere"
    place.mkdir()
    (place / "flow.py").write_text(FLOW)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HEADWAY_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env["HEADWAY_HOME"] = str(tmp_path / "home")
    headway = venv / "bin" / "headway"
    ran = _run([venv / "bin" / "python", "flow.py"], cwd=place, env=env)
    assert ran.stdout.strip().splitlines()[-1] == "total 6"
    listed = _run([headway, "flow-run", "ls"], cwd=place, env=env)
    assert "wheel-check" in listed.stdout or "wheel_check" in listed.stdout
    where = _run(
        [venv / "bin" / "python", "-c", "import headway, sys; print(headway.__file__)"],
        cwd=place,
        env=env,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    version = _run([headway, "version"], cwd=place, env=env).stdout.strip()
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version == declared
    # The server and the dashboard come with the base install.
    port = free_port()
    server = subprocess.Popen(
        [str(headway), "server", "start", "--port", str(port)],
        cwd=place,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, 60, server)  # type: ignore[arg-type]
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        asset = httpx.get(url + "/ui/app.js", timeout=10)
        assert asset.status_code == 200 and len(asset.content) > 100
        # The server reads the same embedded store the flow wrote.
        runs = httpx.get(url + "/api/v1/flow_runs", timeout=10)
        assert runs.status_code == 200
        assert [r["state"]["type"] for r in runs.json()] == ["COMPLETED"]
    finally:
        server.terminate()
        server.wait(20)
