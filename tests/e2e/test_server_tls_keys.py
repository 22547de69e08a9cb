"""The server's operations flags: TLS through uvicorn, and several keys during a key change."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headway.server.runner import ServerProcess, ServerThread, free_port, wait_healthy
from headway.settings import get_settings

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]


def headway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_server_accepts_each_key_of_a_key_change(headway_home: Path) -> None:
    old, new = "old-" + uuid.uuid4().hex, "new-" + uuid.uuid4().hex
    settings = get_settings(
        {"HEADWAY_HOME": str(headway_home), "HEADWAY_API_KEY": new, "HEADWAY_API_KEYS": old}
    )
    assert settings.accepted_api_keys == (new, old)
    with ServerThread(settings) as server:
        url = server.url + "/api/v1/flow_runs"
        for key in (old, new):
            got = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
            assert got.status_code == 200, key
        for wrong in ("", "Bearer " + old + new, "Bearer wrong", old, new):
            got = httpx.get(url, headers={"Authorization": wrong} if wrong else {})
            assert got.status_code == 401, wrong
            assert got.json()["error"] == "Unauthorized"


def test_a_client_with_the_old_key_works_until_it_is_dropped(headway_home: Path) -> None:
    old, new = "old-" + uuid.uuid4().hex, "new-" + uuid.uuid4().hex
    env = {**os.environ, "HEADWAY_HOME": str(headway_home)}
    during = {**env, "HEADWAY_API_KEY": new, "HEADWAY_API_KEYS": f"{old}, other"}
    with ServerProcess(during, host="0.0.0.0") as server:
        base = f"http://127.0.0.1:{server.port}"
        for key in (old, new):
            result = headway(
                {**env, "HEADWAY_API_URL": base, "HEADWAY_API_KEY": key}, "work-pool", "ls"
            )
            assert result.returncode == 0, result.stderr
    # After the change: the old key is refused.
    with ServerProcess({**env, "HEADWAY_API_KEY": new}) as server:
        refused = headway(
            {**env, "HEADWAY_API_URL": server.url, "HEADWAY_API_KEY": old}, "work-pool", "ls"
        )
        assert refused.returncode != 0
        assert "API key" in refused.stderr and "Traceback" not in refused.stderr


def test_extra_keys_alone_let_a_server_bind_all_interfaces(headway_home: Path) -> None:
    env = {**os.environ, "HEADWAY_HOME": str(headway_home), "HEADWAY_API_KEYS": "k1,k2"}
    with ServerProcess(env, host="0.0.0.0") as server:
        got = httpx.get(f"http://127.0.0.1:{server.port}/api/v1/flow_runs")
        assert got.status_code == 401


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    yield cert, key


def test_https_with_ssl_certfile_and_keyfile(
    headway_home: Path, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    port = free_port()
    env = {**os.environ, "HEADWAY_HOME": str(headway_home)}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "server", "start", "--port", str(port),
             "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"https://127.0.0.1:{port}"
        wait_healthy_tls(base, cert, proc)
        # Plain HTTP on the TLS port gets no answer.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        # The CLI reaches it with the certificate trusted (SSL_CERT_FILE, as OpenSSL reads it).
        client_env = {**env, "HEADWAY_API_URL": base, "SSL_CERT_FILE": str(cert)}
        made = headway(client_env, "work-pool", "create", "tls-pool")
        assert made.returncode == 0, made.stderr
        listed = headway(client_env, "work-pool", "ls")
        assert "tls-pool" in listed.stdout
        # Without trusting it, the client refuses the certificate.
        untrusted = headway({**env, "HEADWAY_API_URL": base}, "work-pool", "ls")
        assert untrusted.returncode != 0
        assert "Traceback" not in untrusted.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    assert f"headway server on https://127.0.0.1:{port}" in log.read_text()


def wait_healthy_tls(base: str, cert: Path, proc: subprocess.Popen[bytes]) -> None:
    # wait_healthy speaks plain httpx; point it at the certificate through SSL_CERT_FILE.
    previous = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cert)
    try:
        wait_healthy(base, 60, proc)
    finally:
        if previous is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = previous


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ssl-certfile", "cert.pem"), "--ssl-certfile and --ssl-keyfile go together"),
        (("--ssl-keyfile", "key.pem"), "--ssl-certfile and --ssl-keyfile go together"),
        (
            ("--ssl-certfile", "missing.pem", "--ssl-keyfile", "missing.pem"),
            "--ssl-certfile: no such file",
        ),
    ],
)
def test_bad_tls_flags_are_one_line_exit_2(
    headway_home: Path, args: tuple[str, ...], message: str
) -> None:
    env = {**os.environ, "HEADWAY_HOME": str(headway_home)}
    result = headway(env, "server", "start", "--port", str(free_port()), *args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
