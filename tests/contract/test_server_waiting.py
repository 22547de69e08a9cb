"""Waiting through the server: held requests, answered the moment a slot frees.

The server's own fallback re-check is set to 20 s here (waiter TTL 60 s), so a
request granted within a few seconds was woken by the release's notification.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from headway.concurrency._leases import hold
from headway.core.limits import SlotGrant, SlotWait


@pytest.fixture
def server_settings() -> dict[str, str]:
    return {"HEADWAY_WAITER_TTL_SECONDS": "60"}


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        pause.wait(0.01)


def held(backend: Any) -> int:
    return int(backend.server.app.state.held.waiting)


class Waiter(threading.Thread):
    """A client (of its own) blocked in acquire_slots in a thread."""

    def __init__(self, backend: Any, name: str, **kw: Any) -> None:
        super().__init__(daemon=True)
        self.client = backend.new_client()
        self.limit_name = name
        self.kw = kw
        self.result: SlotGrant | SlotWait | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        start = time.monotonic()
        self.result = self.client.acquire_slots([self.limit_name], 1, **self.kw)
        self.elapsed = time.monotonic() - start


def test_a_held_request_is_answered_when_the_slot_frees(server_backend: Any) -> None:
    client = server_backend.client
    client.create_limit("gate", 1)
    first = client.acquire_slots(["gate"], 1)
    assert isinstance(first, SlotGrant)
    waiter = Waiter(server_backend, "gate", timeout=30)
    waiter.start()
    wait_until(lambda: held(server_backend) == 1 and len(client.inspect_limit("gate").waiters) == 1)
    assert client.release_slots(first.lease_id)
    waiter.join(30)
    assert isinstance(waiter.result, SlotGrant)
    # Woken by the release, not by the server's 20 s re-check or the 30 s timeout.
    assert waiter.elapsed < 10
    assert held(server_backend) == 0
    assert client.read_limit("gate").active_slots == 1
    waiter.client.close()


def test_cancel_ends_a_held_request_without_requeuing(server_backend: Any) -> None:
    client = server_backend.client
    client.create_limit("gate", 1)
    first = client.acquire_slots(["gate"], 1)
    waiter = Waiter(server_backend, "gate", timeout=30, waiter_id="named-waiter-1")
    waiter.start()
    wait_until(lambda: held(server_backend) == 1)
    client.cancel_slot_wait("named-waiter-1")
    waiter.join(30)
    assert isinstance(waiter.result, SlotWait)
    assert waiter.elapsed < 10
    assert client.inspect_limit("gate").waiters == ()
    # The slot, once free, goes to nobody: the cancelled request did not queue again.
    client.release_slots(first.lease_id)
    assert client.read_limit("gate").active_slots == 0
    waiter.client.close()


def test_a_client_that_hangs_up_leaves_the_queue(server_backend: Any) -> None:
    client = server_backend.client
    client.create_limit("gate", 1)
    client.acquire_slots(["gate"], 1)
    headers = {"Authorization": f"Bearer {server_backend.env['HEADWAY_API_KEY']}"}
    body = {"names": ["gate"], "timeout": 30, "waiter_id": "hangs-up"}
    with pytest.raises(httpx.ReadTimeout):
        # The client gives up after 1 s and closes its connection.
        httpx.post(
            server_backend.api_url + "/api/v1/slots/acquire",
            json=body,
            headers=headers,
            timeout=httpx.Timeout(1.0),
        )
    wait_until(lambda: held(server_backend) == 0)
    assert client.inspect_limit("gate").waiters == ()


N_WAITERS = 120


def test_many_held_requests_are_served_fifo_without_a_thread_each(server_backend: Any) -> None:
    client = server_backend.client
    client.create_limit("gate", 1)
    grant = client.acquire_slots(["gate"], 1)
    assert isinstance(grant, SlotGrant)
    # Held as every holder holds a slot, renewed in the background: queueing the
    # requests may outlast one lease on a loaded machine.
    first = hold(client, grant)
    threads_before = threading.active_count()
    url = server_backend.api_url + "/api/v1/slots"
    headers = {"Authorization": f"Bearer {server_backend.env['HEADWAY_API_KEY']}"}
    order: list[str] = []
    observed: dict[str, Any] = {}

    async def main() -> None:
        limits = httpx.Limits(max_connections=N_WAITERS + 10)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=120) as http:

            async def one(i: int) -> None:
                body = {
                    "names": ["gate"],
                    "timeout": 60,
                    "waiter_id": f"w{i}",
                    "holder_id": str(i),
                }
                answer = (await http.post(url + "/acquire", json=body)).json()
                while not answer["granted"]:
                    # A hold ends at the server's long-poll cap: ask again with the
                    # same waiter id, keeping the place in the queue (the protocol).
                    assert answer["wait"]["waiter_id"] == f"w{i}", answer
                    answer = (await http.post(url + "/acquire", json=body)).json()
                order.append(str(i))
                release = {"lease_id": answer["grant"]["lease_id"]}
                assert (await http.post(url + "/release", json=release)).status_code == 200

            tasks = [asyncio.create_task(one(i)) for i in range(N_WAITERS)]
            # Every request queued (its first attempt done) and held.
            while True:
                detail = await asyncio.to_thread(client.inspect_limit, "gate")
                if len(detail.waiters) == N_WAITERS and held(server_backend) == N_WAITERS:
                    break
                await asyncio.sleep(0.05)
            observed["queue"] = [w.holder.id for w in detail.waiters]
            observed["threads"] = threading.active_count()
            await asyncio.to_thread(first.release)
            await asyncio.wait_for(asyncio.gather(*tasks), 120)

    asyncio.run(main())
    assert len(observed["queue"]) == N_WAITERS
    # Served in exactly the order they queued.
    assert order == observed["queue"]
    # The held requests cost no thread each: the pool stays at its bound.
    assert observed["threads"] - threads_before < 60
    assert held(server_backend) == 0
    assert client.read_limit("gate").active_slots == 0


def test_held_requests_keep_their_places_past_the_waiter_ttl(server_backend: Any) -> None:
    # The server refreshes the rows of every request it holds in one call, so a
    # queue whose re-attempts lag under load does not lose places to expiry.
    client = server_backend.client
    client.create_limit("gate", 1)
    grant = client.acquire_slots(["gate"], 1)
    assert isinstance(grant, SlotGrant)
    first = hold(client, grant)
    ttl = server_backend.server.settings.waiter_ttl_seconds
    orchestrator = server_backend.server.app.state.orchestrator
    for waiter in ("early", "late"):
        queued = client.acquire_slots(["gate"], 1, timeout=0, waiter_id=waiter, holder_id=waiter)
        assert isinstance(queued, SlotWait)
    assert [w.holder.id for w in client.inspect_limit("gate").waiters] == ["early", "late"]
    # Past the TTL for "late" only: "early" is refreshed, "late" is not.
    server_backend.clock.advance(ttl - 1)
    assert client.renew_leases([grant.lease_id]) == []
    orchestrator.refresh_waiters(["early"])
    server_backend.clock.advance(2)
    # The gate's holder renews as its renewer would have over that time.
    assert client.renew_leases([grant.lease_id]) == []
    client.sweep_slots()
    assert [w.holder.id for w in client.inspect_limit("gate").waiters] == ["early"]
    first.release()
    granted = client.acquire_slots(["gate"], 1, timeout=0, waiter_id="early", holder_id="early")
    assert isinstance(granted, SlotGrant)
    assert granted.lease_id is not None
    client.release_slots(granted.lease_id)
