"""Task-tag limits: a task run with tags holds one slot of each ``tag:<tag>`` limit.

The decisive test runs tagged tasks of real flows in two processes at once and
has an observer outside headway (a counter under a file lock) record how many
ran at the same moment: never more than the tag's limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from headway.client.base import Client
from headway.concurrency.tags import hold_tag_slots
from helpers.waiting import wait_until

# The external observer: a counter file under an exclusive lock, updated by each
# task as it starts and ends. It knows nothing of headway.
OBSERVER_SOURCE = """
import fcntl, json, os, time

def _update(delta):
    with open(os.environ["OBSERVER_FILE"], "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        raw = fh.read()
        s = json.loads(raw) if raw else {"total": 0, "now": 0, "most": 0, "running": {}}
        me = str(os.getpid())
        first = me not in s["running"]
        s["now"] += delta
        s["running"][me] = s["running"].get(me, 0) + delta
        if delta > 0:
            s["total"] += 1
            s["most"] = max(s["most"], s["now"])
        # How many processes had a task running at the same moment, at most.
        together = sum(1 for n in s["running"].values() if n > 0)
        s["together"] = max(s.get("together", 0), together)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(s))
        return first, len(s["running"])

def enter():
    first, _ = _update(1)
    if first:
        # This process's first task keeps its slot until the other process has
        # had a task running too, so that the two surely hold slots of the limit
        # at the same moment (however the machine schedules them).
        deadline = time.monotonic() + 60
        while _update(0)[1] < 2 and time.monotonic() < deadline:
            time.sleep(0.005)

def leave():
    _update(-1)

def start_together():
    # Both processes announce themselves, then start when the test says go.
    open(os.path.join(os.environ["READY_DIR"], str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["GO_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.005)
"""


def read_observer(path: Path) -> dict[str, Any]:
    """total runs, ``most`` at once, ``now`` running, ``together``: most processes at once."""
    return dict(json.loads(path.read_text()))


def test_a_tagged_run_holds_one_slot_of_each_limited_tag(client: Client) -> None:
    client.create_limit("tag:db", 2)
    client.create_limit("tag:io", 1)
    with hold_tag_slots(client, ["db", "io", "free"], task_run_id="run-1", flow_run_id=None) as s:
        assert s.held is not None and set(s.held.names) == {"tag:db", "tag:io"}
        [holder] = client.inspect_limit("tag:io").holders
        assert (holder.holder.kind, holder.holder.id) == ("task_run", "run-1")
        assert client.read_limit("tag:db").active_slots == 1
    assert client.read_limit("tag:db").active_slots == 0
    assert client.read_limit("tag:io").active_slots == 0


def test_tags_without_limits_take_nothing(client: Client) -> None:
    with hold_tag_slots(client, ["a", "b"], task_run_id="run-1", flow_run_id=None) as s:
        assert s.held is None
    with hold_tag_slots(client, [], task_run_id="run-2", flow_run_id=None) as s:
        assert s.held is None
    assert client.list_limits() == []


def test_a_second_run_waits_for_the_tag_slot(client: Client) -> None:
    client.create_limit("tag:db", 1)
    entered = threading.Event()
    order: list[str] = []

    def second() -> None:
        with hold_tag_slots(client, ["db"], task_run_id="run-2", flow_run_id=None):
            order.append("second")
            entered.set()

    with hold_tag_slots(client, ["db"], task_run_id="run-1", flow_run_id=None):
        t = threading.Thread(target=second, daemon=True)
        t.start()
        wait_until(lambda: bool(client.inspect_limit("tag:db").waiters), "the second queued")
        [waiter] = client.inspect_limit("tag:db").waiters
        assert (waiter.holder.kind, waiter.holder.id) == ("task_run", "run-2")
        assert not entered.is_set()
        order.append("first done")
    assert entered.wait(10)
    t.join(10)
    assert order == ["first done", "second"]


FLOW_SCRIPT = """
import sys, time
from headway import flow, task
{observer}

@task(tags=["db"])
def use_db(i):
    enter()
    time.sleep(0.05)
    leave()
    return i

@flow
def many():
    return sum(f.result() for f in [use_db.submit(i) for i in range(int(sys.argv[1]))])

start_together()
print(many())
"""


def test_tagged_tasks_across_two_processes_never_exceed_the_limit(
    client: Client, backend: object, tmp_path: Path
) -> None:
    client.create_limit("tag:db", 2)
    counter = tmp_path / "observer"
    ready = tmp_path / "ready"
    ready.mkdir()
    go = tmp_path / "go"
    script = tmp_path / "flow_script.py"
    script.write_text(FLOW_SCRIPT.format(observer=textwrap.dedent(OBSERVER_SOURCE)))
    env = {
        **os.environ,
        **getattr(backend, "env", {}),
        "OBSERVER_FILE": str(counter),
        "READY_DIR": str(ready),
        "GO_FILE": str(go),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "16"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        wait_until(lambda: len(list(ready.iterdir())) == 2, "both processes ready")
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, err[-2000:]
            assert out.strip().splitlines()[-1] == str(sum(range(16)))
    finally:
        for p in procs:
            p.kill()
    seen = read_observer(counter)
    assert seen["total"] == 32  # every task ran...
    assert seen["most"] == 2  # ...never more than the limit at once (and the limit was used)
    # The processes really competed: both held slots of the limit at the same moment.
    assert seen["together"] == 2
    assert seen["now"] == 0
    limit = client.read_limit("tag:db")
    assert limit.active_slots == 0 and limit.grants == 32


def test_async_runs_await_their_tag_slots_without_blocking_the_loop(client: Client) -> None:
    import asyncio

    client.create_limit("tag:db", 1)
    inside = 0
    most = 0

    async def run(i: int) -> None:
        nonlocal inside, most
        async with hold_tag_slots(client, ["db"], task_run_id=f"run-{i}", flow_run_id=None):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)  # the loop keeps running: the others wait in the store
            inside -= 1

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(run(i) for i in range(4))), 60)

    asyncio.run(main())
    assert most == 1
    assert client.read_limit("tag:db").grants == 4


def test_a_blocking_enter_inside_an_event_loop_fails_instead_of_deadlocking(
    client: Client,
) -> None:
    import asyncio

    from headway.exceptions import ConcurrencySlotAcquisitionError

    client.create_limit("tag:db", 1)

    async def main() -> None:
        async with hold_tag_slots(client, ["db"], task_run_id="run-1", flow_run_id=None):
            with pytest.raises(ConcurrencySlotAcquisitionError, match="async with"):
                with hold_tag_slots(client, ["db"], task_run_id="run-2", flow_run_id=None):
                    pass
        # Free slots are taken at once, even by a plain `with`.
        with hold_tag_slots(client, ["db"], task_run_id="run-3", flow_run_id=None) as s:
            assert s.held is not None

    asyncio.run(main())
    assert client.inspect_limit("tag:db").waiters == ()


def test_async_tagged_tasks_share_a_tag_limit(client: Client) -> None:
    import asyncio

    from headway import flow, task

    client.create_limit("tag:db", 1)
    inside = 0
    most = 0

    @task(tags=["db"])
    async def use_db(i: int) -> int:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.01)
        inside -= 1
        return i

    @flow
    async def many() -> list[int]:
        return list(await asyncio.gather(*(use_db(i) for i in range(3))))

    assert asyncio.run(asyncio.wait_for(many(), 60)) == [0, 1, 2]
    assert most == 1
