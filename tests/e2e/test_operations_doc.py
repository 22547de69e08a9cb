"""docs/many-machines.md, "Operating it": its SQL, units and commands run as written.

The blocks are read from the page itself, so the page cannot drift from what
was tested. Names that must be unique on a shared PostgreSQL (roles and the
database) and the ports are substituted; nothing else is.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from headway.server.runner import ServerProcess, free_port, wait_healthy
from helpers.postgres import ADMIN_URL, admin_connection

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

DOC = Path(__file__).resolve().parents[2] / "docs" / "many-machines.md"
BIN = Path(sys.executable).parent


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def shell_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update(extra)
    return env


@pytest.fixture
def roles() -> Iterator[tuple[str, str, str, str]]:
    """The page's roles and database, made on the cluster: (owner, app, database, base URL)."""
    admin = admin_connection()
    token = secrets.token_hex(4)
    owner, app, database = f"hw_owner_{token}", f"hw_app_{token}", f"hw_db_{token}"

    def named(sql: str) -> str:
        sql = sql.replace("headway_owner", owner).replace("headway_app", app)
        return re.sub(r"\bheadway\b", database, sql)

    cluster_sql, database_sql = (named(b) for b in blocks(section("PostgreSQL"), "sql"))
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        for statement in filter(str.strip, cluster_sql.split(";")):
            admin.execute(statement)  # type: ignore[arg-type]
        host = base.split("@", 1)[1]
        with psycopg.connect(f"postgresql://{owner}:change-me-owner@{host}/{database}",
                             autocommit=True) as conn:  # fmt: skip
            for statement in filter(str.strip, database_sql.split(";")):
                conn.execute(statement)  # type: ignore[arg-type]
        yield owner, app, database, f"postgresql+psycopg://%s@{host}/{database}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        for role in (app, owner):
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()


FLOW = """
from headway import flow, task
from headway.concurrency.sync import concurrency


@task(tags=["warehouse"])
def load(part: int) -> int:
    with concurrency("api"):
        return part * 10


@flow
def etl() -> int:
    return sum(load.map(range(4)).result())


print(etl())
"""


def test_the_least_privileged_role_runs_a_server(
    roles: tuple[str, str, str, str], tmp_path: Path
) -> None:
    import psycopg

    owner, app, _database, url = roles
    owner_url = url % f"{owner}:change-me-owner"
    app_url = url % f"{app}:change-me-app"
    upgrade = subprocess.run(
        [BIN / "headway", "db", "upgrade"], env=shell_env(HEADWAY_DATABASE_URL=owner_url),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    # The app role reads and writes rows, and nothing more.
    plain = app_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE intruder (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE flow_runs")
    key = "k-" + uuid.uuid4().hex
    server_env = shell_env(HEADWAY_DATABASE_URL=app_url, HEADWAY_API_KEY=key,
                           HEADWAY_HOME=str(tmp_path / "server"))  # fmt: skip
    with ServerProcess(server_env, log_path=tmp_path / "server.log") as server:
        client_env = shell_env(HEADWAY_API_URL=server.url, HEADWAY_API_KEY=key,
                               HEADWAY_HOME=str(tmp_path / "client"))  # fmt: skip
        client_env.pop("HEADWAY_DATABASE_URL", None)
        for args in (["concurrency-limit", "create", "warehouse", "2"],
                     ["gcl", "create", "api", "--limit", "1"],
                     ["work-pool", "create", "etl", "--limit", "4"]):  # fmt: skip
            made = subprocess.run([BIN / "headway", *args], env=client_env, capture_output=True,
                                  text=True, timeout=60, check=False)  # fmt: skip
            assert made.returncode == 0, (args, made.stderr)
        script = tmp_path / "etl.py"
        script.write_text(FLOW)
        ran = subprocess.run([sys.executable, str(script)], env=client_env, capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip().splitlines()[-1] == "60"


def _headway(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([BIN / "headway", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_backup_and_restore_commands(roles: tuple[str, str, str, str], tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    for tool in ("pg_dump", "pg_restore", "createdb"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    owner, app, database, url = roles
    restored = f"{database}_restored"
    dump, restore = (b.strip() for b in blocks(section("PostgreSQL"), "console")[-2:])

    def named(command: str) -> str:
        command = command.replace("headway_owner", owner).replace("headway_restored", restored)
        return re.sub(r"\bheadway\b", database, command)

    cluster = urlsplit(ADMIN_URL)
    pg_env = shell_env(PG_HOST=cluster.hostname or "127.0.0.1", PGPORT=str(cluster.port or 5432),
                       PGPASSWORD="change-me-owner")  # fmt: skip
    _headway(["db", "upgrade"], shell_env(HEADWAY_DATABASE_URL=url % f"{owner}:change-me-owner"))
    key = "k-" + uuid.uuid4().hex

    def server_on(db_url: str, name: str) -> ServerProcess:
        env = shell_env(HEADWAY_DATABASE_URL=db_url, HEADWAY_API_KEY=key,
                        HEADWAY_HOME=str(tmp_path / name))  # fmt: skip
        return ServerProcess(env, log_path=tmp_path / f"{name}.log")

    def client_env(server: ServerProcess) -> dict[str, str]:
        env = shell_env(HEADWAY_API_URL=server.url, HEADWAY_API_KEY=key,
                        HEADWAY_HOME=str(tmp_path / "client"))  # fmt: skip
        env.pop("HEADWAY_DATABASE_URL", None)
        return env

    # Something worth keeping: limits, a pool, a finished flow run with its task runs.
    with server_on(url % f"{app}:change-me-app", "server") as server:
        env = client_env(server)
        _headway(["concurrency-limit", "create", "warehouse", "2"], env)
        _headway(["gcl", "create", "api", "--limit", "1"], env)
        _headway(["work-pool", "create", "etl", "--limit", "4"], env)
        script = tmp_path / "etl.py"
        script.write_text(FLOW)
        ran = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, timeout=120, check=False)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        before = _headway(["flow-run", "ls"], env)
    admin = admin_connection()
    try:
        for command in (dump, restore):
            for line in filter(str.strip, named(command).splitlines()):
                done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=pg_env,
                                      capture_output=True, text=True, timeout=120,
                                      check=False)  # fmt: skip
                assert done.returncode == 0, (line, done.stderr)
        assert len(list(tmp_path.glob(f"{database}-*.dump"))) == 1
        # A server on the restored copy, as the app role, serves what was saved.
        restored_url = url.rsplit("/", 1)[0] + f"/{restored}"
        with server_on(restored_url % f"{app}:change-me-app", "restored") as server:
            env = client_env(server)
            assert _headway(["flow-run", "ls"], env) == before
            assert "etl" in _headway(["work-pool", "ls"], env)
            assert "warehouse" in _headway(["concurrency-limit", "ls"], env)
            _headway(["gcl", "inspect", "api"], env)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
        admin.close()


def test_systemd_units_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = blocks(section("Running as a service"), "ini")
    assert len(units) == 2
    for name, unit in zip(("headway-server.service", "headway-worker.service"), units, strict=True):
        path = tmp_path / name
        # The page installs headway in /opt/headway/venv; here it is this environment.
        path.write_text(unit.replace("/opt/headway/venv/bin/headway", str(BIN / "headway")))
        done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, (name, done.stdout, done.stderr)
    assert "headway server start" in units[0] and "headway worker start" in units[1]


def test_reading_the_api_docs_with_a_key(headway_home: Path, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    text = section("Reading the API docs")
    fetch, own_server = (b.strip() for b in blocks(text, "console"))
    key = "k-" + uuid.uuid4().hex
    env = shell_env(HEADWAY_HOME=str(headway_home), HEADWAY_API_KEY=key)
    with ServerProcess(env) as server:
        assert httpx.get(server.url + "/openapi.json").status_code == 401
        assert httpx.get(server.url + "/docs").status_code == 401
        done = subprocess.run(["bash", "-c", fetch], cwd=tmp_path, capture_output=True, text=True,
                              env={**env, "API_1": f"127.0.0.1:{server.port}"}, timeout=60,
                              check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
    described = (tmp_path / "headway-openapi.json").read_text()
    assert '"openapi"' in described and "/api/v1/deployments" in described
    # A keyless loopback server of your own serves the same docs.
    port = free_port()
    command = own_server.replace("4300", str(port)).rstrip("&").strip()
    assert command.endswith(f"--port {port}")
    proc = subprocess.Popen(["bash", "-c", f"exec env {command}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 60, proc)  # type: ignore[arg-type]
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_tls_command(
    headway_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (command,) = (b.strip() for b in blocks(section("TLS"), "console"))
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    command = command.replace("/etc/headway/tls", str(tls)).replace("4200", str(port))
    key = "k-" + uuid.uuid4().hex
    env = shell_env(HEADWAY_HOME=str(headway_home), HEADWAY_API_KEY=key,
                    SSL_CERT_FILE=str(tls / "cert.pem"))  # fmt: skip
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        base = f"https://127.0.0.1:{port}"
        # The health check speaks httpx, which trusts SSL_CERT_FILE too.
        monkeypatch.setenv("SSL_CERT_FILE", str(tls / "cert.pem"))
        wait_healthy(base, 60, proc)  # type: ignore[arg-type]
        listed = subprocess.run(
            [BIN / "headway", "work-pool", "ls"], env={**env, "HEADWAY_API_URL": base},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_nginx_site_outlasts_a_held_request() -> None:
    # What the page says of its nginx site, checked against the server (a held
    # slot request lasts up to LONG_POLL_CAP_SECONDS; the proxy must wait longer
    # and must not buffer) wherever nginx is missing; test_nginx_site_doc.py runs it.
    from headway.server.waiting import LONG_POLL_CAP_SECONDS

    (site,) = blocks(section("TLS"), "nginx")
    settings = dict(
        re.findall(r"^\s*(proxy_\w+|keepalive)\s+(.+?);$", site, flags=re.M)  # last one wins
    )
    read_timeout = settings["proxy_read_timeout"]
    assert read_timeout.endswith("s") and float(read_timeout[:-1]) > LONG_POLL_CAP_SECONDS
    assert f"held open for up to {LONG_POLL_CAP_SECONDS:g} s" in section("TLS")
    assert settings["proxy_buffering"] == "off"
    # Kept-alive upstream connections need HTTP/1.1 and no "Connection: close".
    assert settings["proxy_http_version"] == "1.1" and "keepalive" in settings
    assert 'proxy_set_header Connection ""' in site
