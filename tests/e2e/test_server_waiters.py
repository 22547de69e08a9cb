"""1,000 clients blocked on one limit through a real server: no thread each, served FIFO.

The requests come from one event loop here (a thousand processes would only
measure the test machine), each on its own kept-alive connection written with
asyncio's streams (an async HTTP client's pool spent more CPU than the server
it tested); to the server they are a thousand connections, each holding an
acquire request. While all of them wait, the server process's
thread count stays at its pool's bound; when the slot is released they are
granted one after another in exactly the order they queued (checked for the
first hundred handoffs; then the limit is deleted and the rest go at once).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from headway.client.http import HttpClient
from headway.concurrency._leases import hold
from headway.core.limits import SlotGrant
from headway.server.runner import ServerProcess
from headway.settings import get_settings

N = 1000
IN_TURN = 100


class Connection:
    """One kept-alive HTTP/1.1 connection to the server, one request at a time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        status = await reader.readline()
        assert status.split()[1] == b"200", status
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return json.loads(await reader.readexactly(length))

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_thousand_held_requests(headway_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HEADWAY_WAITER_TTL_SECONDS": "120"}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        client = HttpClient(get_settings({**env, "HEADWAY_API_URL": server.url}))
        client.create_limit("gate", 1)
        grant = client.acquire_slots(["gate"], 1)
        assert isinstance(grant, SlotGrant)
        # Held as every holder holds a slot: its lease renewed in the background.
        # Queueing a thousand requests can outlast one lease on a loaded machine,
        # and an unrenewed lease would be reaped and its slot handed on early.
        first = hold(client, grant)
        idle_threads = threads_of(server.pid)
        path = "/api/v1/slots"
        order: list[str] = []
        seen: dict[str, object] = {}

        async def main() -> None:
            async def one(i: int) -> None:
                http = Connection(server.url)
                try:
                    body = {"names": ["gate"], "timeout": 240, "waiter_id": f"w{i}"}
                    body["holder_id"] = str(i)
                    # The server holds a request up to its cap (30 s); asking again
                    # with the same waiter id keeps the place in the queue.
                    answer = await http.post(path + "/acquire", body)
                    while not answer["granted"]:
                        answer = await http.post(path + "/acquire", body)
                    order.append(str(i))
                    if len(order) == IN_TURN:
                        # Enough handoffs one by one: let the rest through together
                        # (a deleted limit no longer limits its waiters).
                        await asyncio.to_thread(client.delete_limit, "gate", force=True)
                    lease = answer["grant"]["lease_id"]
                    if lease is not None:
                        answer = await http.post(path + "/release", {"lease_id": lease})
                        assert answer["intact"] or len(order) >= IN_TURN
                finally:
                    http.close()

            tasks = [asyncio.create_task(one(i)) for i in range(N)]
            while True:
                detail = await asyncio.to_thread(client.inspect_limit, "gate")
                if len(detail.waiters) == N:
                    break
                ended = [t for t in tasks if t.done()]
                if ended:
                    failure = ended[0].exception()
                    raise AssertionError(f"a request ended early: {failure!r}") from failure
                await asyncio.sleep(0.1)
            seen["queue"] = [w.holder.id for w in detail.waiters]
            seen["threads"] = threads_of(server.pid)
            await asyncio.to_thread(first.release)
            await asyncio.wait_for(asyncio.gather(*tasks), 600)

        asyncio.run(main())
        assert seen["threads"] - idle_threads < 60  # type: ignore[operator]
        assert len(order) == N
        queue = seen["queue"]
        assert isinstance(queue, list) and sorted(queue) == sorted(order)
        assert order[:IN_TURN] == queue[:IN_TURN]
        assert client.list_limits() == []
        client.close()
