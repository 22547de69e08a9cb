"""Uncontended acquire+release pairs per second through one headway server.

A real ``headway server start`` (one process) on SQLite and on PostgreSQL;
client processes each take and give back one slot of their own limit (so no
request ever waits) as fast as they can, through HttpClient, for a fixed time.
Prints pairs/s for each store (the goal: at least 1,000/s), and the latency of
one pair seen by a single client. A server is measured serving many clients:
one client alone is bound by its own round trips (and on PostgreSQL by each
commit's flush to disk), so the default is 8 client processes, all on this
same machine as the server and the database.

Each store is measured four ways in one run: the server's slot fast path on
and off (``HEADWAY_SERVER_FASTPATH``) times the client's transport, headway's
kept-alive one (stdlib) or httpx's own (``HEADWAY_CLIENT_TRANSPORT``). The
floor printed first is one loopback HTTP round trip to a bare ASGI app under
the same uvicorn (no headway, no store); a pair is two round trips, so each
single-client latency is also given as a ratio to twice the floor. CPU time,
which other work on the machine disturbs less than elapsed time, is printed
too: the server's per pair (from /proc, over the many-client phase) against the
bare app's per round trip, and the clients' per pair.

Usage: python benchmarks/bench_server_throughput.py [--stores sqlite,postgres]
       [--clients 8] [--seconds 5] [--transports stdlib,httpx] [--fastpath on,off]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_server_setup import percentile, store

#: A bare ASGI app (a fixed JSON answer to any request) under uvicorn, on port argv[1].
FLOOR_APP = """
import sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trip_floor(rounds: int = 3000) -> tuple[float, float]:
    """One kept-alive POST to a bare ASGI app under uvicorn on loopback: the median
    seconds it takes, and the bare server's CPU seconds per request."""
    from headway.client.transport import KeepAliveTransport
    from headway.server.runner import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(port)])
    try:
        deadline = time.monotonic() + 30
        pause = threading.Event()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the floor's bare server did not start") from None
                pause.wait(0.05)
        transport = KeepAliveTransport()
        headers = [("Content-Type", "application/json")]
        timeouts = {"connect": 5.0, "read": 5.0, "write": 5.0}
        body = b'{"lease_id":"0123456789abcdef0123456789abcdef"}'
        times = []
        cpu_before = cpu_seconds(proc.pid)
        for _ in range(rounds):
            t0 = time.perf_counter()
            transport.send("POST", "http", "127.0.0.1", port, "/x", headers, body, timeouts)
            times.append(time.perf_counter() - t0)
        server_cpu = (cpu_seconds(proc.pid) - cpu_before) / rounds
        transport.close()
        return percentile(times, 0.5), server_cpu
    finally:
        proc.terminate()
        proc.wait(10)


def _client(
    url: str, transport: str, limit: str, seconds: float, ready: Any, start: Any, out: Any
) -> None:
    from headway.client.http import HttpClient
    from headway.settings import get_settings

    client = HttpClient(
        get_settings({"HEADWAY_API_URL": url, "HEADWAY_CLIENT_TRANSPORT": transport})
    )
    grant = client.acquire_slots([limit], 1)  # warm the connection
    client.release_slots(grant.lease_id)  # type: ignore[union-attr,arg-type]
    ready.put(1)
    start.wait()
    # Every client stops at the same moment: pairs / seconds is the server's rate.
    pairs = 0
    deadline = start.at.value + seconds
    cpu = time.process_time()
    while time.time() < deadline:
        grant = client.acquire_slots([limit], 1)
        client.release_slots(grant.lease_id)  # type: ignore[union-attr,arg-type]
        pairs += 1
    out.put((pairs, time.process_time() - cpu))


class _Start:
    """A start signal carrying the wall-clock moment it was given."""

    def __init__(self, ctx: Any) -> None:
        self._event = ctx.Event()
        self.at = ctx.Value("d", 0.0)

    def go(self) -> None:
        self.at.value = time.time()
        self._event.set()

    def wait(self) -> None:
        self._event.wait()


def run(
    kind: str,
    fastpath: bool,
    transports: list[str],
    clients: int,
    seconds: float,
    floor: tuple[float, float],
) -> None:
    from headway.client.http import HttpClient
    from headway.server.runner import ServerProcess
    from headway.settings import get_settings

    switch = "on" if fastpath else "off"
    with (
        store(kind) as env,
        ServerProcess({**env, "HEADWAY_SERVER_FASTPATH": "1" if fastpath else "0"}) as server,
    ):
        for transport in transports:
            label = f"{kind:8s} fastpath {switch:3s} transport {transport:6s}"
            settings = {"HEADWAY_API_URL": server.url, "HEADWAY_CLIENT_TRANSPORT": transport}
            admin = HttpClient(get_settings(settings))
            names = [f"bench-{transport}-{i}" for i in range(clients)]
            for name in names:
                admin.create_limit(name, 1_000_000)
            lat = []
            for _ in range(300):
                t0 = time.perf_counter()
                grant = admin.acquire_slots([names[0]], 1)
                admin.release_slots(grant.lease_id)  # type: ignore[union-attr,arg-type]
                lat.append(time.perf_counter() - t0)
            ctx = mp.get_context("spawn")
            start = _Start(ctx)
            ready = ctx.Queue()
            out = ctx.Queue()
            procs = [
                ctx.Process(
                    target=_client,
                    args=(server.url, transport, name, seconds, ready, start, out),
                )
                for name in names
            ]
            for p in procs:
                p.start()
            for _ in procs:  # every client imported and connected before the clock starts
                ready.get(timeout=120)
            server_cpu = cpu_seconds(server.pid)
            start.go()
            counts = [out.get(timeout=seconds + 60) for _ in procs]
            server_cpu = cpu_seconds(server.pid) - server_cpu
            total = sum(pairs for pairs, _ in counts)
            client_cpu = sum(cpu for _, cpu in counts)
            for p in procs:
                p.join()
            leaked = sum(admin.read_limit(name).active_slots for name in names)
            p50 = percentile(lat, 0.5)
            floor_time, floor_cpu = floor
            per_pair = server_cpu / max(total, 1)
            print(
                f"{label}: {clients} clients {total / seconds:6.0f} pairs/s"
                f" (slots still held after: {leaked:.0f}); CPU per pair: server"
                f" {per_pair * 1e6:.0f} us = {per_pair / (2 * floor_cpu):.1f}x the floor's,"
                f" client {client_cpu / max(total, 1) * 1e6:.0f} us;"
                f" one client p50 {p50 * 1000:.2f} ms, p99 {percentile(lat, 0.99) * 1000:.2f} ms"
                f" per pair = {p50 / (2 * floor_time):.1f}x the floor",
                flush=True,
            )
            admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--transports", default="stdlib,httpx")
    parser.add_argument("--fastpath", default="on,off")
    args = parser.parse_args()
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    switches = [s.strip() for s in args.fastpath.split(",") if s.strip()]
    if set(switches) - {"on", "off"}:
        parser.error(f"--fastpath: on, off or both, got {args.fastpath!r}")
    print(f"machine: {os.cpu_count()} CPUs; server: 1 process (headway server start)")
    floor = round_trip_floor()
    print(
        f"floor: one loopback HTTP round trip to a bare ASGI app under uvicorn, p50"
        f" {floor[0] * 1e6:.0f} us, the bare server's CPU {floor[1] * 1e6:.0f} us"
        f" (a pair is two: {2 * floor[0] * 1000:.2f} ms, {2 * floor[1] * 1e6:.0f} us CPU)",
        flush=True,
    )
    for kind in args.stores.split(","):
        for switch in switches:
            run(kind.strip(), switch == "on", transports, args.clients, args.seconds, floor)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
