"""PostgreSQL specifics: wake-ups across servers by LISTEN/NOTIFY, reconnecting after a drop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headway.client.factory import embedded_client
from headway.client.http import HttpClient
from headway.core.limits import SlotGrant
from headway.core.states import Running
from headway.server.runner import ServerThread
from headway.settings import get_settings
from helpers.waiting import wait_until


@pytest.fixture
def pg_url(postgres_databases: Any) -> Iterator[str]:
    if isinstance(postgres_databases, str):
        import os

        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {postgres_databases}")
        pytest.skip(postgres_databases)
    url = postgres_databases.create()
    try:
        yield url
    finally:
        postgres_databases.drop(url)


def _terminate_others(url: str) -> int:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = plain.rsplit("/", 1)[1]
    with psycopg.connect(plain.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def test_a_waiter_on_one_server_is_woken_by_a_release_on_another(
    pg_url: str, headway_home: Path
) -> None:
    # Waiter rows live an hour, so the servers' own re-check comes only every
    # 20 min: a grant within the request's single 20 s hold came from the NOTIFY
    # of the other server (without it the hold ends refused).
    env = {
        "HEADWAY_HOME": str(headway_home),
        "HEADWAY_DATABASE_URL": pg_url,
        "HEADWAY_WAITER_TTL_SECONDS": "3600",
    }
    with ServerThread(get_settings(env)) as one, ServerThread(get_settings(env)) as two:
        a = HttpClient(get_settings({"HEADWAY_API_URL": one.url}))
        b = HttpClient(get_settings({"HEADWAY_API_URL": two.url}))
        a.create_limit("shared", 1)
        held = a.acquire_slots(["shared"], 1)
        assert isinstance(held, SlotGrant)
        result: dict[str, Any] = {}

        def wait_on_two() -> None:
            result["grant"] = b.acquire_slots(["shared"], 1, timeout=20)

        waiter = threading.Thread(target=wait_on_two, daemon=True)
        waiter.start()
        wait_until(lambda: bool(a.inspect_limit("shared").waiters), "the request queued")
        a.release_slots(held.lease_id)
        waiter.join(60)
        assert isinstance(result["grant"], SlotGrant)
        a.close()
        b.close()


def test_embedded_postgres_reconnects_after_its_connection_is_dropped(
    pg_url: str, headway_home: Path
) -> None:
    client = embedded_client(
        get_settings({"HEADWAY_HOME": str(headway_home), "HEADWAY_DATABASE_URL": pg_url})
    )
    client.create_limit("db", 1)
    assert _terminate_others(pg_url) >= 1
    # The next transaction finds its connection dead at BEGIN and opens another.
    assert client.read_limit("db").limit == 1
    grant = client.acquire_slots(["db"], 1)
    assert isinstance(grant, SlotGrant)
    assert client.release_slots(grant.lease_id)
    client.close()


def test_a_server_on_postgres_survives_dropped_connections(pg_url: str, headway_home: Path) -> None:
    env = {"HEADWAY_HOME": str(headway_home), "HEADWAY_DATABASE_URL": pg_url}
    with ServerThread(get_settings(env)) as server:
        client = HttpClient(get_settings({"HEADWAY_API_URL": server.url}))
        client.create_limit("db", 2)
        client.create_flow_run(id="0" * 36, name="r", flow_name="f", state=Running())
        assert _terminate_others(pg_url) >= 1
        # Every thread of the server meets a dead connection once; none of it shows.
        for _ in range(20):
            assert client.read_limit("db").limit == 2
        assert client.read_flow_run("0" * 36).flow_name == "f"
        client.close()


def test_connections_of_ended_threads_are_closed(pg_url: str) -> None:
    import psycopg

    from headway.store.db import Database

    db = Database(pg_url)

    def one_transaction() -> None:
        with db.read() as tx:
            assert tx.one("SELECT 1") == (1,)

    # A server's pool threads come and go; their connections must not pile up.
    for _ in range(30):
        thread = threading.Thread(target=one_transaction)
        thread.start()
        thread.join()
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = plain.rsplit("/", 1)[1]
    with psycopg.connect(plain.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:

        def sessions() -> int:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
            assert row is not None
            return int(row[0])

        # A closed connection's backend leaves pg_stat_activity once it has exited,
        # a moment later (longer on a loaded machine); connections left open stay.
        wait_until(lambda: sessions() <= 2, "the closed connections' backends gone")
    db.close()
