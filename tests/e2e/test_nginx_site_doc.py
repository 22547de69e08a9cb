"""docs/many-machines.md, "TLS": the page's nginx site runs in front of two real servers.

The site block is read from the page, so the page cannot drift from what was
run. The test changes only what must differ on a test machine: each upstream
``server`` becomes one of two ``headway server start`` processes on loopback
ports (sharing one embedded store), ``listen 443`` a free loopback port, and
the certificate paths a self-signed certificate made here. Around the block it
puts what a system's ``nginx.conf`` would hold (pid file, logs, temporary
directories), all in the test's own prefix directory, and runs nginx in the
foreground (``-g 'daemon off;'``), not as a service.

Through the proxy it checks the API with and without the key, a
``concurrency()`` wait held by the server for a whole long poll while another
holder keeps the slot (the proxy's read timeout must outlast it, and it must
pass the server's answer on unbuffered), and the dashboard at ``/``.

nginx comes from Debian's ``nginx-light`` (``make nginx``). Without it the
test skips on a developer machine and fails in CI (``CI=true``), like the
dashboard tests without Chromium.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from dashboard_chromium import in_ci

from headway.client.base import get_client
from headway.client.http import POLL_SECONDS
from headway.concurrency.sync import concurrency
from headway.server.runner import ServerProcess, free_port
from helpers.processes import Processes
from helpers.waiting import wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "many-machines.md"

#: Where the page puts its certificate; here, a folder of the test.
DOC_TLS = "/etc/headway/tls"

#: What a system's nginx.conf holds around the site, here in the test's prefix.
MAIN_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    log_format held '$request_method $uri $status $request_time';
    access_log {prefix}/access.log held;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
"""


def nginx_binary() -> str:
    """nginx's path; skips (fails with CI=true) when it is not installed."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        reason = "nginx is not installed (install Debian's nginx-light: `make nginx`)"
        if in_ci():
            pytest.fail(f"{reason} (CI=true: the reverse-proxy test must run)", pytrace=False)
        pytest.skip(reason)
    return found


def site_block() -> str:
    """The nginx block of the page's TLS section, as written."""
    text = DOC.read_text()
    start = text.index("### TLS")
    section = text[start : text.index("\n### ", start + 1)]
    sites: list[str] = re.findall(r"```nginx\n(.*?)```", section, flags=re.S)
    assert len(sites) == 1, sites
    return sites[0]


def local_site(site: str, upstreams: list[int], port: int, tls: Path) -> str:
    """The page's site with its hosts, port and certificate paths made local."""
    servers = re.findall(r"^(\s*server\s+)(\S+);$", site, flags=re.M)
    assert len(servers) == len(upstreams), servers  # one headway server per upstream line
    for (lead, address), upstream in zip(servers, upstreams, strict=True):
        site = site.replace(f"{lead}{address};", f"{lead}127.0.0.1:{upstream};", 1)
    assert site.count("listen 443 ssl;") == 1 and site.count(DOC_TLS) == 2, site
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    return site.replace(DOC_TLS, str(tls))


def self_signed(folder: Path) -> Path:
    """A certificate and key for 127.0.0.1, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder


def start_nginx(
    procs: Processes, nginx: str, prefix: Path, site_for_port: Callable[[int], str]
) -> tuple[int, subprocess.Popen[bytes]]:
    """nginx in the foreground with its own prefix; (port, process) once it answers."""
    prefix.mkdir()
    for attempt in range(3):  # a free port may be taken before nginx binds it
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(MAIN_CONF.format(prefix=prefix, site=site_for_port(port)))
        proc = procs.start(
            [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
             "-g", "daemon off;"],
            name="nginx",
        )  # fmt: skip

        def answers(port: int = port) -> bool:
            try:
                httpx.get(f"https://127.0.0.1:{port}/health", verify=False, timeout=2)
            except httpx.TransportError:
                return False
            return True

        try:
            wait_until(answers, "nginx answers", timeout=60, alive=proc)
        except AssertionError:
            error_log = (prefix / "error.log").read_text(errors="replace")
            if attempt < 2 and "Address already in use" in error_log:
                continue
            raise AssertionError(error_log[-4000:]) from None
        return port, proc
    raise AssertionError("unreachable")


@pytest.mark.slow  # one request is held for the client's whole long poll (25 s)
def test_the_pages_nginx_site_in_front_of_two_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nginx = nginx_binary()
    site = site_block()
    tls = self_signed(tmp_path / "tls")
    key = "k-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
    env.update(HEADWAY_HOME=str(tmp_path / "servers"), HEADWAY_API_KEY=key)
    upstream_lines = len(re.findall(r"^\s*server\s+\S+;$", site, flags=re.M))
    assert upstream_lines == 2, site  # the page's two servers
    servers = [
        ServerProcess(env, log_path=tmp_path / f"server-{n}.log") for n in range(upstream_lines)
    ]
    prefix = tmp_path / "nginx"
    with Processes(tmp_path) as procs:
        try:
            for server in servers:
                server.start()
            ports = [server.port for server in servers]
            port, proxy = start_nginx(
                procs, nginx, prefix, lambda port: local_site(site, ports, port, tls)
            )
            base = f"https://127.0.0.1:{port}"
            cert = str(tls / "cert.pem")
            trust = ssl.create_default_context(cafile=cert)

            # The API: the key travels through the proxy, end to end.
            assert httpx.get(f"{base}/api/v1/limits", verify=trust).status_code == 401
            keyed = {"Authorization": f"Bearer {key}"}
            listed = httpx.get(f"{base}/api/v1/limits", verify=trust, headers=keyed)
            assert listed.status_code == 200 and listed.json() == [], listed.text

            # The dashboard at /, and its assets, open without the key.
            page = httpx.get(f"{base}/", verify=trust)
            assert page.status_code == 200, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert "Content-Security-Policy" in page.headers
            assets = re.findall(r'(?:src|href)="(/ui/[^"?]+)', page.text)
            assert assets, page.text[:2000]
            for asset in assets:
                assert httpx.get(f"{base}{asset}", verify=trust).status_code == 200, asset

            # A concurrency() wait through the proxy: held by a server for a
            # whole long poll while another holder keeps the slot, asked again,
            # and granted when the slot is given back.
            monkeypatch.setenv("HEADWAY_API_URL", base)
            monkeypatch.setenv("HEADWAY_API_KEY", key)
            monkeypatch.setenv("SSL_CERT_FILE", cert)
            client = get_client()
            client.create_limit("db", 1)
            granted = threading.Event()
            errors: list[BaseException] = []

            def waiter() -> None:
                try:
                    with concurrency("db"):
                        granted.set()
                except BaseException as exc:
                    errors.append(exc)

            access_log = prefix / "access.log"
            with concurrency("db"):
                thread = threading.Thread(target=waiter, daemon=True)
                thread.start()
                wait_until(lambda: client.inspect_limit("db").waiters, "the waiter queued",
                           alive=proxy)  # fmt: skip
                # Queued, it makes a request the server holds; it comes back only
                # when the server ends the hold (the slot stays taken), so the
                # proxy waited that long, then passed the answer on.
                answered_before = _acquires(access_log)
                wait_until(
                    lambda: len(_acquires(access_log)) > len(answered_before),
                    "the held request answered through the proxy",
                    timeout=POLL_SECONDS + 60,
                    alive=proxy,
                )
                status, seconds = _acquires(access_log)[len(answered_before)]
                assert status == "200", (status, seconds)
                assert not granted.is_set() and not errors
            thread.join(60)
            assert granted.is_set(), (errors, (prefix / "error.log").read_text()[-4000:])
            assert not errors
            assert client.inspect_limit("db").limit.active_slots == 0
        finally:
            for server in servers:
                server.stop()
    # nginx gave up on no request (a timeout or a refused upstream would be logged).
    error_log = (prefix / "error.log").read_text(errors="replace")
    assert "upstream timed out" not in error_log and "no live upstreams" not in error_log
    assert not [line for line in _acquires(prefix / "access.log") if line[0] != "200"]


def _acquires(access_log: Path) -> list[tuple[str, float]]:
    # (status, seconds) of each slot request nginx has answered, in order.
    lines = access_log.read_text().splitlines() if access_log.exists() else []
    return [
        (status, float(seconds))
        for method, uri, status, seconds in (line.split() for line in lines)
        if method == "POST" and uri.endswith("/slots/acquire")
    ]
