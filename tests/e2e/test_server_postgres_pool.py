"""A server on PostgreSQL holds no more connections than HEADWAY_DATABASE_POOL_SIZE.

A real ``headway server start`` with a pool of 4 serves many clients at once:
requests held open waiting for a slot, flow runs moving through their states,
log batches written and read. An observer outside headway counts the server's
sessions in ``pg_stat_activity`` (named ``headway:<pid>``) all along: never more
than 4, and every request succeeds. Then two servers started at the same moment
on a new, empty database both come up (the migration runs once, under an
advisory lock), each with a pool of 2, the least there is.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headway.client.http import HttpClient
from headway.core.limits import SlotGrant
from headway.core.models import LogRecord
from headway.core.states import Completed, Pending, Running, Scheduled, StateType
from headway.server.runner import ServerProcess, free_port, wait_healthy
from headway.settings import get_settings
from headway.store.migrations import HEAD
from helpers.postgres import fresh_postgres
from helpers.processes import CLI, Processes
from helpers.waiting import wait_until

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

POOL_SIZE = 4
WAITERS = 16
RUNNERS = 6


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


class SessionCounter:
    """Counts, from outside, the sessions one server process holds, as often as it can."""

    def __init__(self, url: str, pid: int) -> None:
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
        base, self._database = plain.rsplit("/", 1)
        self._admin = psycopg.connect(base + "/postgres", autocommit=True)
        self._name = f"headway:{pid}"
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        """The server's sessions now."""
        row = self._admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (self._database, self._name),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.count())
            self.samples += 1
            self._stop.wait(0.005)

    def __enter__(self) -> SessionCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._admin.close()


def _in_threads(targets: list[Callable[[], None]]) -> tuple[list[threading.Thread], list[str]]:
    errors: list[str] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # every failure is reported by the test
                errors.append(repr(exc))

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads, errors


def test_a_busy_server_never_holds_more_connections_than_its_pool_size(
    pg_url: str, headway_home: Path
) -> None:
    env = {
        **os.environ,
        "HEADWAY_HOME": str(headway_home),
        "HEADWAY_DATABASE_URL": pg_url,
        "HEADWAY_DATABASE_POOL_SIZE": str(POOL_SIZE),
    }
    headway_home.mkdir(parents=True, exist_ok=True)
    log = headway_home / "server.log"
    server = ServerProcess(env, log_path=log).start()
    settings = get_settings({"HEADWAY_API_URL": server.url, "HEADWAY_HOME": str(headway_home)})
    clients: list[HttpClient] = []

    def client() -> HttpClient:
        made = HttpClient(settings)
        clients.append(made)
        return made

    try:
        with SessionCounter(pg_url, server.pid) as counter:
            admin = client()
            admin.create_limit("gate", 1)
            held = admin.acquire_slots(["gate"], 1)
            assert isinstance(held, SlotGrant) and held.lease_id is not None
            grants: list[SlotGrant] = []

            def wait_for_the_gate() -> None:
                mine = client()
                grant = mine.acquire_slots(["gate"], 1, timeout=300)
                assert isinstance(grant, SlotGrant) and grant.lease_id is not None, grant
                grants.append(grant)
                assert mine.release_slots(grant.lease_id)

            def run_flows() -> None:
                mine = client()
                for _ in range(5):
                    run_id = str(uuid.uuid4())
                    mine.create_flow_run(id=run_id, name="r", flow_name="busy", state=Scheduled())
                    mine.set_flow_run_state(run_id, Pending())
                    mine.set_flow_run_state(run_id, Running())
                    now = datetime.now(UTC)
                    lines = [
                        LogRecord(run_id, None, 20, "INFO", "busy", f"line {i}", now)
                        for i in range(50)
                    ]
                    mine.write_logs(lines)
                    assert [line.message for _, line in mine.read_logs(run_id)] == [
                        line.message for line in lines
                    ]
                    done = mine.set_flow_run_state(run_id, Completed())
                    assert done.state.type is StateType.COMPLETED
                    assert mine.list_flow_runs(flow_name="busy", limit=5)

            waiters, waiter_errors = _in_threads([wait_for_the_gate] * WAITERS)
            # Every waiter's request is held open by the server before any is let through.
            wait_until(
                lambda: len(admin.inspect_limit("gate").waiters) == WAITERS or waiter_errors,
                "every request waiting on the gate",
                alive=server.proc,
            )
            runners, runner_errors = _in_threads([run_flows] * RUNNERS)
            admin.release_slots(held.lease_id)
            for thread in [*waiters, *runners]:
                thread.join(300)
            assert not any(t.is_alive() for t in [*waiters, *runners]), "a client never finished"
            assert waiter_errors == [] and runner_errors == [], log.read_text()[-3000:]
            assert len(grants) == WAITERS
            assert admin.read_limit("gate").active_slots == 0
            held_now = counter.count()
        # The observer saw the server at work (the wake-up listener and at least
        # one pooled connection), and never above its budget.
        assert counter.samples > 10
        assert 2 <= counter.peak <= POOL_SIZE, counter.peak
        assert held_now <= POOL_SIZE
    finally:
        for made in clients:
            made.close()
        server.stop()


def test_two_servers_started_at_once_on_a_new_database_both_come_up(
    pg_url: str, headway_home: Path
) -> None:
    headway_home.mkdir(parents=True, exist_ok=True)

    def env(n: int) -> dict[str, str]:
        return {
            **os.environ,
            "HEADWAY_HOME": str(headway_home / f"server-{n}"),
            "HEADWAY_DATABASE_URL": pg_url,
            # The least there is: the migration's lock, its second look and
            # Alembic's work must all share the one pooled connection.
            "HEADWAY_DATABASE_POOL_SIZE": "2",
        }

    # Both started before either is waited for (from this thread: a server
    # started from a thread of its own would die with that thread).
    ports = [free_port(), free_port()]
    with Processes(headway_home) as processes:
        servers = [
            processes.start(
                [*CLI, "server", "start", "--port", str(port)], name="server", env=env(n)
            )
            for n, port in enumerate(ports, 1)
        ]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, proc in zip(urls, servers, strict=True):
            try:
                wait_healthy(url, 120, proc)
            except Exception as exc:
                pytest.fail(f"{url} did not come up ({exc}): {processes.output(proc)[-3000:]}")
        clients = [HttpClient(get_settings({"HEADWAY_API_URL": url})) for url in urls]
        clients[0].create_limit("shared", 1)
        grant = clients[1].acquire_slots(["shared"], 1)
        assert isinstance(grant, SlotGrant) and grant.lease_id is not None
        assert clients[0].read_limit("shared").active_slots == 1
        assert clients[0].release_slots(grant.lease_id)
        for made in clients:
            made.close()
    import psycopg

    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
