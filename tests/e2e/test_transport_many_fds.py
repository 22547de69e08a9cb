"""The client's transport in a process with more than 1024 files open.

``select()`` cannot watch a descriptor numbered 1024 or more; a transport that
checked idle connections with it found every one of them unusable there, and
opened a new connection for every request. Slot pairs through a real server on
loopback, from a process whose sockets are all numbered above 1024, must reuse
one kept-alive connection.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from headway.server.runner import ServerThread
from headway.settings import get_settings

DUMMY_FILES = 1100

SCRIPT = """
import json, os, resource, sys
from headway.client.http import HttpClient
from headway.settings import get_settings

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, {need}), hard))
dummies = [os.open(os.devnull, os.O_RDONLY) for _ in range({dummies})]
client = HttpClient(get_settings({{"HEADWAY_API_URL": sys.argv[1]}}))
client.create_limit("many-fds", 1)
intact = []
for _ in range(40):
    grant = client.acquire_slots(["many-fds"], 1)
    intact.append(client.release_slots(grant.lease_id))
transport = client.transport
print(json.dumps({{
    "lowest_dummy": min(dummies),
    "highest_dummy": max(dummies),
    "opened": transport.opened,
    "idle_fds": [c.sock.fileno() for conns in transport._idle.values() for c, _ in conns],
    "intact": all(intact),
    "active": client.read_limit("many-fds").active_slots,
}}))
"""


def test_slot_pairs_reuse_one_connection_with_descriptors_above_1024(tmp_path: Path) -> None:
    need = DUMMY_FILES + 200
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard limit on open files ({hard}) is below {need}")
    settings = get_settings({"HEADWAY_HOME": str(tmp_path)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
    with ServerThread(settings) as server:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(need=need, dummies=DUMMY_FILES), server.url],
            env={**env, "HEADWAY_HOME": str(tmp_path / "client")},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["highest_dummy"] >= 1024
    # The connection was opened after the dummies: its descriptor is above 1024.
    assert seen["idle_fds"] and min(seen["idle_fds"]) > 1024
    assert seen["intact"] and seen["active"] == 0
    # 81 requests (a create, 40 pairs) on the one kept-alive connection.
    assert seen["opened"] == 1
