"""Waiting through the server: held requests, answered the moment a slot frees.

The server's own fallback re-check (a third of the waiter TTL) is set to 20 min
here, beyond the life of every request below: a held request that is answered
at all before its own timeout was woken by the release's (or the cancel's)
notification.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from headway.concurrency._leases import hold
from headway.core.limits import SlotGrant, SlotWait
from helpers.waiting import wait_until


@pytest.fixture
def server_settings() -> dict[str, str]:
    return {"HEADWAY_WAITER_TTL_SECONDS": "3600"}


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

    def run(self) -> None:
        self.result = self.client.acquire_slots([self.limit_name], 1, **self.kw)


def test_a_held_request_is_answered_when_the_slot_frees(server_backend: Any) -> None:
    client = server_backend.client
    client.create_limit("gate", 1)
    first = client.acquire_slots(["gate"], 1)
    assert isinstance(first, SlotGrant)
    # 20 s: one hold (within the client's 25 s poll and the server's 30 s cap), so
    # the request is never asked again, and far within the 20 min re-check.
    waiter = Waiter(server_backend, "gate", timeout=20)
    waiter.start()
    wait_until(
        lambda: held(server_backend) == 1 and len(client.inspect_limit("gate").waiters) == 1,
        "the request held",
    )
    assert client.release_slots(first.lease_id)
    waiter.join(60)
    # Granted, so woken by the release: without it the hold would have ended at
    # its timeout with a refusal (the server's re-check comes 20 min later).
    assert isinstance(waiter.result, SlotGrant)
    assert held(server_backend) == 0
    assert client.read_limit("gate").active_slots == 1
    waiter.client.close()


def test_cancel_ends_a_held_request_without_requeuing(server_backend: Any) -> None:
    client = server_backend.client
    client.create_limit("gate", 1)
    first = client.acquire_slots(["gate"], 1)
    # No timeout: the server holds the request for the client's whole poll (25 s).
    waiter = Waiter(server_backend, "gate", timeout=None, waiter_id="named-waiter-1")
    waiter.start()
    wait_until(lambda: held(server_backend) == 1, "the request held")
    client.cancel_slot_wait("named-waiter-1")
    # The cancel ends the hold (not the poll running out, 25 s after it began).
    wait_until(lambda: not waiter.is_alive(), "the cancelled request answered", timeout=20)
    assert isinstance(waiter.result, SlotWait)
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
    wait_until(lambda: held(server_backend) == 0, "the hung-up request gone")
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
            def all_held() -> bool:
                detail = client.inspect_limit("gate")
                observed["queue"] = [w.holder.id for w in detail.waiters]
                return len(detail.waiters) == N_WAITERS and held(server_backend) == N_WAITERS

            await asyncio.to_thread(wait_until, all_held, "every request queued and held")
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
