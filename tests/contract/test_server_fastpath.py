"""The slot fast path answers exactly as FastAPI's routes do.

``HEADWAY_SERVER_FASTPATH=0`` serves slot acquire, release and renew through
the ordinary routes. Two real servers, one each way, are sent the same
requests (valid and invalid: bad JSON, values the models refuse, errors the
orchestrator raises, a wrong key, a wrong method, a body too large); every
answer must have the same status, the same JSON body and the same type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headway.server.fastpath import SlotFastPath
from headway.server.runner import ServerThread
from headway.settings import get_settings

KEY = "fastpath-test-key"
JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
#: Answer fields that differ between any two servers (ids, clocks), compared by shape only.
VARYING = {
    "lease_id",
    "expires",
    "waited_seconds",
    "created",
    "updated",
    "since",
    "expires_at",
    "id",
}

#: (method, path under /api/v1, body: JSON value or raw bytes, headers). "{lease}" in
#: a body is the lease id the server under test granted first.
REQUESTS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", "/limits", {"name": "gate", "limit": 1}, JSON),
    ("POST", "/limits", {"name": "pair", "limit": 3}, JSON),
    ("POST", "/slots/acquire", {"names": ["gate"]}, JSON),
    # Full: not granted at once, and held for a moment under a named waiter.
    ("POST", "/slots/acquire", {"names": ["gate"], "timeout": 0}, JSON),
    ("POST", "/slots/acquire", {"names": ["gate"], "timeout": 0.05, "waiter_id": "w1"}, JSON),
    ("POST", "/slots/acquire", {"names": ["gate", "pair"], "slots": 2, "strict": True}, JSON),
    ("POST", "/slots/acquire", {"names": ["nobody"], "strict": True}, JSON),
    ("POST", "/slots/acquire", {"names": ["nobody"]}, JSON),
    ("POST", "/slots/acquire", {"names": ["pair"], "slots": 4, "strict": True}, JSON),
    ("POST", "/slots/acquire", {"names": ["pair"], "slots": 0}, JSON),
    ("POST", "/slots/acquire", {"names": ["pair"], "slots": 2**63}, JSON),
    ("POST", "/slots/acquire", {"names": ["pair"], "mode": "sideways"}, JSON),
    ("POST", "/slots/acquire", {"names": ["pair"], "lease_seconds": -1}, JSON),
    ("POST", "/slots/acquire", {"names": ["pair"], "timeout": float("nan")}, JSON),
    ("POST", "/slots/acquire", {"names": []}, JSON),
    ("POST", "/slots/acquire", {"names": "pair"}, JSON),
    ("POST", "/slots/acquire", {}, JSON),
    ("POST", "/slots/acquire", b"{", JSON),
    ("POST", "/slots/acquire", b"", JSON),
    ("POST", "/slots/acquire", b"[1, 2]", JSON),
    ("POST", "/slots/acquire", {"names": ["pair"]}, {"Content-Type": "application/json"}),
    ("POST", "/slots/acquire", {"names": ["pair"], "pad": "x" * (2 * 1024 * 1024)}, JSON),
    ("GET", "/slots/acquire", None, JSON),
    ("POST", "/slots/renew", {"lease_ids": ["{lease}"], "lease_seconds": 60}, JSON),
    ("POST", "/slots/renew", {"lease_ids": ["{lease}", "unknown-lease"]}, JSON),
    ("POST", "/slots/renew", {"lease_ids": []}, JSON),
    ("POST", "/slots/renew", {"lease_ids": "{lease}"}, JSON),
    ("POST", "/slots/renew", {"lease_ids": ["{lease}"], "lease_seconds": 0}, JSON),
    ("POST", "/slots/renew", b"not json", JSON),
    ("POST", "/slots/release", {"lease_id": "{lease}"}, JSON),
    ("POST", "/slots/release", {"lease_id": "{lease}"}, JSON),
    ("POST", "/slots/release", {"lease_id": 5}, JSON),
    ("POST", "/slots/release", {"lease_id": ""}, JSON),
    ("POST", "/slots/release", {}, JSON),
    ("PUT", "/slots/release", {"lease_id": "{lease}"}, JSON),
    ("GET", "/limits/gate", None, JSON),
    ("GET", "/limits/pair", None, JSON),
]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, ServerThread]]:
    running: dict[str, ServerThread] = {}
    try:
        for switch in ("1", "0"):
            env = {
                "HEADWAY_HOME": str(tmp_path / f"fastpath-{switch}"),
                "HEADWAY_API_KEY": KEY,
                "HEADWAY_SERVER_FASTPATH": switch,
            }
            running[switch] = ServerThread(get_settings(env)).start()
        yield running
    finally:
        for server in running.values():
            server.stop()


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: type(v).__name__ if k in VARYING else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _answers(server: ServerThread) -> list[tuple[str, int, str, Any]]:
    seen: list[tuple[str, int, str, Any]] = []
    lease = ""
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as http:
        for method, path, body, headers in REQUESTS:
            if body is None:
                content = None
            elif isinstance(body, bytes):
                content = body
            else:
                content = json.dumps(body).replace("{lease}", lease).encode()
            answer = http.request(method, path, content=content, headers=headers)
            decoded = answer.json() if answer.content else None
            if not lease and isinstance(decoded, dict) and decoded.get("granted"):
                lease = decoded["grant"]["lease_id"]
            label = f"{method} {path} {str(body)[:80]}"
            seen.append((label, answer.status_code, answer.headers["content-type"], _mask(decoded)))
    assert lease, "the first acquire was not granted"
    return seen


def test_both_ways_give_the_same_answers(servers: dict[str, ServerThread]) -> None:
    # The switch takes effect: the fast path sits in one app's stack only.
    stacks = {k: [m.cls for m in s.app.user_middleware] for k, s in servers.items()}
    assert SlotFastPath in stacks["1"] and SlotFastPath not in stacks["0"]
    fast, routed = _answers(servers["1"]), _answers(servers["0"])
    for one, other in zip(fast, routed, strict=True):
        assert one == other
    statuses = {status for _, status, _, _ in fast}
    # Valid and invalid requests both: grants, refusals, 4xx of each kind.
    assert {200, 201, 401, 405, 409, 413, 422} <= statuses, statuses
