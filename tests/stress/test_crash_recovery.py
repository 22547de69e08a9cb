"""Crash-safe: a dead holder's slots come back by themselves; a dead waiter leaves no ghost.

Real subprocesses on the embedded store, leases of 1 second:

- a holder killed with SIGKILL: its slots are back within 2 x the lease (at
  once, in fact: its pid is gone) and ``headway gcl inspect`` shows no holder;
- a holder frozen with SIGSTOP (alive, but not renewing): its lease expires and
  a waiter gets the slots within 2 x the lease; when it resumes, it learns that
  it lost them (LeaseLostError);
- a waiter killed while queued: the request behind it is served when the slot
  frees, not after the dead waiter's row would have expired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from headway.client.base import Client, get_client
from headway.concurrency.sync import concurrency
from helpers.waiting import wait_until

LEASE = 1.0

HOLDER = """
import sys
from headway.concurrency.sync import concurrency
from headway.exceptions import LeaseLostError

try:
    with concurrency("db", occupy=int(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.readline()  # hold until told to leave
except LeaseLostError as exc:
    print("lost:", exc, flush=True)
    sys.exit(3)
print("released", flush=True)
"""

WAITER = """
from headway.concurrency.sync import concurrency

with concurrency("db"):
    print("granted", flush=True)
"""


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The embedded store with 1 s leases; waiter rows that would linger for a minute."""
    monkeypatch.setenv("HEADWAY_CONCURRENCY_LEASE_SECONDS", str(LEASE))
    monkeypatch.setenv("HEADWAY_WAITER_TTL_SECONDS", "60")
    yield get_client()


def spawn(source: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", source, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    return line.strip()


def inspect_json() -> dict[str, object]:
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "headway"), "gcl", "inspect", "db", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def test_a_killed_holder_gives_its_slots_back(client: Client) -> None:
    client.create_limit("db", 2)
    holder = spawn(HOLDER, "2")
    try:
        assert read_line(holder) == "held"
        [lease] = client.inspect_limit("db").holders
        assert lease.holder.pid == holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
    # Within 2 x the lease, without any admin action.
    with concurrency("db", occupy=2, timeout_seconds=2 * LEASE):
        [mine] = client.inspect_limit("db").holders
        assert mine.holder.pid == os.getpid()
    shown = inspect_json()
    assert shown["holders"] == [] and shown["active_slots"] == 0
    assert client.read_limit("db").active_slots == 0


def test_a_frozen_holder_loses_its_lease_and_learns_it(client: Client) -> None:
    client.create_limit("db", 1)
    holder = spawn(HOLDER, "1")
    try:
        assert read_line(holder) == "held"
        holder.send_signal(signal.SIGSTOP)  # alive, but no renewal any more
        with concurrency("db", timeout_seconds=2 * LEASE):
            [mine] = client.inspect_limit("db").holders
            assert mine.holder.pid == os.getpid()
            holder.send_signal(signal.SIGCONT)
            assert holder.stdin is not None
            holder.stdin.write("leave\n")
            holder.stdin.flush()
            # The resumed holder finds its lease gone when it leaves its block.
            assert read_line(holder).startswith("lost:")
            assert holder.wait(20) == 3
            # Its late release took nothing from the new holder.
            assert client.read_limit("db").active_slots == 1
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
    assert client.read_limit("db").active_slots == 0


def test_a_killed_waiter_leaves_no_ghost(client: Client) -> None:
    client.create_limit("db", 1)
    served = threading.Event()
    failure: list[BaseException] = []

    def next_in_line() -> None:
        try:
            # Far less than the 60 s a ghost row would block the queue.
            with concurrency("db", timeout_seconds=10):
                served.set()
        except BaseException as exc:
            failure.append(exc)

    with concurrency("db"):
        waiter = spawn(WAITER)
        try:
            wait_until(lambda: len(client.inspect_limit("db").waiters) == 1)
            [ghost] = client.inspect_limit("db").waiters
            assert ghost.holder.pid == waiter.pid
            waiter.send_signal(signal.SIGKILL)
            waiter.wait(10)
        finally:
            waiter.kill()
        behind = threading.Thread(target=next_in_line, daemon=True)
        behind.start()
        wait_until(
            lambda: any(w.holder.pid == os.getpid() for w in client.inspect_limit("db").waiters)
        )
    behind.join(15)
    assert not failure, failure
    assert served.is_set()
    assert client.inspect_limit("db").waiters == ()
    assert client.read_limit("db").active_slots == 0
