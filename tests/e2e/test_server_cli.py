"""``headway server start`` and ``headway db`` as users run them: real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from headway.server.runner import ServerProcess, free_port
from helpers.waiting import wait_until

CLI = [sys.executable, "-c", "from headway.cli import run; run()"]


def headway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env or dict(os.environ), capture_output=True, text=True, timeout=60
    )


def test_non_loopback_bind_needs_a_key_or_insecure() -> None:
    result = headway("server", "start", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert result.stderr.startswith("Error: refusing to bind 0.0.0.0 without HEADWAY_API_KEY")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.fresh_store  # checks that a refused start creates no store
def test_a_taken_port_is_one_line_exit_2_every_time(headway_home: Path) -> None:
    # It used to exit 139 about one try in five: the store closed under a running pass.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for _ in range(5):
            result = headway("server", "start", "--port", port)
            assert result.returncode == 2, result.stderr
            assert result.stderr == (
                f"Error: cannot listen on 127.0.0.1:{port}: address already in use"
                " (another server? choose --port)\n"
            )
    assert not (headway_home / "headway.db").exists()  # refused before anything opened


@pytest.mark.parametrize(
    "args",
    [("--workers", "0"), ("--port", "70000"), ("--port", "abc"), ("--database-url", "mysql://x")],
)
def test_bad_server_arguments_are_one_line_exit_2(args: tuple[str, ...]) -> None:
    result = headway("server", "start", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: ")
    assert "Traceback" not in result.stderr


def test_server_with_a_key_on_all_interfaces(headway_home: Path, tmp_path: Path) -> None:
    key = "k-" + uuid.uuid4().hex
    env = {**os.environ, "HEADWAY_API_KEY": key}
    log = tmp_path / "server.log"
    with ServerProcess(env, host="0.0.0.0", log_path=log) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(base + "/health").status_code == 200
        assert httpx.get(base + "/api/v1/flow_runs").status_code == 401
        authed = httpx.get(base + "/api/v1/flow_runs", headers={"Authorization": f"Bearer {key}"})
        assert authed.status_code == 200 and authed.json() == []
        # Another process reaches it through HEADWAY_API_URL and the key alone.
        client_env = {**env, "HEADWAY_API_URL": base}
        script = (
            "import uuid, json\n"
            "from headway.client.base import get_client\n"
            "from headway.core.states import Running\n"
            "c = get_client()\n"
            "c.create_flow_run(id=str(uuid.uuid4()), name='r', flow_name='remote',"
            " state=Running())\n"
            "print(json.dumps([type(c).__name__] + [r.flow_name for r in c.list_flow_runs()]))\n"
        )
        remote = subprocess.run(
            [sys.executable, "-c", script], env=client_env, capture_output=True, text=True
        )
        assert remote.returncode == 0, remote.stderr
        assert json.loads(remote.stdout) == ["HttpClient", "remote"]
        assert len(authed_list(base, key)) == 1
        config = headway("config", "-o", "json", env=client_env)
        assert config.returncode == 0
        assert key not in config.stdout
    server_log = log.read_text()
    assert key not in server_log
    assert "API key: required" in server_log


def authed_list(base: str, key: str) -> list[object]:
    answer = httpx.get(base + "/api/v1/flow_runs", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    result: list[object] = answer.json()
    return result


def test_insecure_allows_a_keyless_public_bind(tmp_path: Path) -> None:
    with ServerProcess(host="0.0.0.0", extra_args=("--insecure",)) as server:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/api/v1/flow_runs")
        assert answer.status_code == 200


@pytest.mark.slow
@pytest.mark.fresh_store  # the first upgrade creates the store
def test_db_upgrade_and_reset(headway_home: Path) -> None:
    first = headway("db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded" in first.stdout and (headway_home / "headway.db").exists()
    again = headway("db", "upgrade")
    assert again.returncode == 0 and "already at" in again.stdout

    from headway.client.factory import embedded_client
    from headway.core.states import Running
    from headway.settings import get_settings

    client = embedded_client(get_settings())
    run_id = str(uuid.uuid4())
    client.create_flow_run(id=run_id, name="r", flow_name="f", state=Running())
    client.close()

    refused = headway("db", "reset")
    assert refused.returncode == 2
    assert refused.stderr.startswith("Error: ") and "--yes" in refused.stderr
    client = embedded_client(get_settings())
    assert [r.id for r in client.list_flow_runs()] == [run_id]  # nothing changed
    client.close()

    done = headway("db", "reset", "--yes")
    assert done.returncode == 0, done.stderr
    client = embedded_client(get_settings())
    assert client.list_flow_runs() == []
    client.close()


def test_worker_processes_share_limits_and_wake_each_other(headway_home: Path) -> None:
    import threading

    from headway.client.http import HttpClient
    from headway.core.limits import SlotGrant
    from headway.settings import get_settings

    # Waiter rows live an hour: a worker's own re-check comes every 20 min, so a
    # grant within a request's single 20 s hold came from a wake-up sent by
    # whichever worker handled the release (without one the hold ends refused).
    env = {**os.environ, "HEADWAY_WAITER_TTL_SECONDS": "3600"}
    with ServerProcess(env, workers=2) as server:
        settings = get_settings({**env, "HEADWAY_API_URL": server.url})
        holder = HttpClient(settings)
        holder.create_limit("pair", 1)
        grant = holder.acquire_slots(["pair"], 1)
        assert isinstance(grant, SlotGrant)
        results: list[object] = []
        lock = threading.Lock()

        def wait_for_slot() -> None:
            client = HttpClient(settings)
            got = client.acquire_slots(["pair"], 1, timeout=20)
            with lock:
                results.append(got)
            if isinstance(got, SlotGrant):
                client.release_slots(got.lease_id)
            client.close()

        waiters = [threading.Thread(target=wait_for_slot, daemon=True) for _ in range(4)]
        for thread in waiters:
            thread.start()
        wait_until(lambda: len(holder.inspect_limit("pair").waiters) == 4, "four requests queued")
        holder.release_slots(grant.lease_id)
        for thread in waiters:
            thread.join(60)
        assert len(results) == 4
        # Four handoffs in a row, each woken by a release (none by a re-check).
        assert all(isinstance(got, SlotGrant) for got in results)
        assert holder.read_limit("pair").active_slots == 0
        holder.close()


def test_a_server_whose_picked_port_was_taken_meanwhile_starts_on_another(
    headway_home: Path,
) -> None:
    env = {**os.environ, "HEADWAY_HOME": str(headway_home)}
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)  # someone else's listener, on the port the server was given
    try:
        server = ServerProcess(env)
        taken = squatter.getsockname()[1]
        server.port = taken
        with server:
            assert server.port != taken
            assert httpx.get(server.url + "/health", timeout=5).json()["status"] == "ok"
    finally:
        squatter.close()
