"""A limit's ``active_slots`` is a whole number, as in Prefect.

Prefect decays a rate limit's slots by whole slots (``active_slots -
floor(decay * seconds)``); headway decays continuously and reports the slots
admission counts as taken, rounded up, keeping the exact value in
``exact_active_slots``. The two agree: a limit at 9.81 of 10 admits nothing,
and shows 10.

The store here reads a clock that stands still unless the test moves it, so
"0.38 s later" is exact, whatever the machine's load.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from headway.cli import main
from headway.client.base import Client, set_default_client
from headway.client.factory import embedded_client
from headway.concurrency import sync
from headway.settings import get_settings


class StillClock:
    """Seconds since the epoch that only change when :meth:`advance` says so."""

    def __init__(self) -> None:
        self._now = time.time()
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@pytest.fixture
def still() -> Iterator[tuple[Client, StillClock]]:
    clock = StillClock()
    client = embedded_client(get_settings(), clock=clock)
    set_default_client(client)  # tests/conftest.py restores the default and closes this one
    yield client, clock


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert main([*args, "-o", "json"]) == 0
    shown: dict[str, object] = json.loads(capsys.readouterr().out)
    return shown


def test_cli_created_rate_limit_shows_whole_active_slots(
    still: tuple[Client, StillClock], capsys: pytest.CaptureFixture[str]
) -> None:
    """Prefect: ``test_create_gcl``
    in tests/cli/test_global_concurrency_limit.py.

    ``gcl create test --limit 10 --active-slots 10 --slot-decay-per-second 0.5``,
    then read back a moment later: 10 active slots, not 9.81."""
    _, clock = still
    args = ["--limit", "10", "--active-slots", "10", "--slot-decay-per-second", "0.5"]
    assert main(["gcl", "create", "test", *args]) == 0
    clock.advance(0.38)
    shown = cli_json(capsys, "gcl", "inspect", "test")
    assert shown["limit"] == 10 and shown["slot_decay_per_second"] == 0.5
    assert shown["active_slots"] == 10
    assert shown["exact_active_slots"] == pytest.approx(9.81)
    (listed,) = [row for row in cli_json_list(capsys) if row["name"] == "test"]
    assert listed["active_slots"] == 10


def cli_json_list(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["gcl", "ls", "-o", "json"]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


def test_read_limit_returns_decayed_whole_active_slots(still: tuple[Client, StillClock]) -> None:
    """Prefect: ``test_read_concurrency_limit_returns_decayed_active_slots``
    in tests/server/orchestration/api/test_concurrency_limits_v2.py.

    Limit 10, all 10 taken, decaying 0.1/s, read 30.5 s later: 7 (6.95 exact)."""
    client, clock = still
    client.create_limit("decaying-limit", 10, active_slots=10, slot_decay_per_second=0.1)
    clock.advance(30.5)
    limit = client.read_limit("decaying-limit")
    assert limit.active_slots == 7 and isinstance(limit.active_slots, int)
    assert limit.exact_active_slots == pytest.approx(6.95)


def test_whole_active_slots_match_what_admission_allows(still: tuple[Client, StillClock]) -> None:
    """Prefect: ``test_increment_active_slots_with_decay_slots_decay_over_time``
    in tests/server/models/test_concurrency_limits_v2.py.

    Filled to 10 with a decay of 5/s: no room for 5 more at once; 2 s later
    everything has drained and 5 fit. The whole number shown says the same."""
    client, clock = still
    client.create_limit("decaying", 10, slot_decay_per_second=5.0)
    sync.rate_limit("decaying", occupy=10)
    assert client.read_limit("decaying").active_slots == 10
    clock.advance(0.9)  # 5.5 exact: 6 shown, and 5 more do not fit
    assert client.read_limit("decaying").active_slots == 6
    with pytest.raises(TimeoutError):
        sync.rate_limit("decaying", occupy=5, timeout_seconds=0)
    clock.advance(1.1)
    assert client.read_limit("decaying").active_slots == 0
    sync.rate_limit("decaying", occupy=5, timeout_seconds=0)
    assert client.read_limit("decaying").active_slots == 5


def test_plain_limits_count_whole_slots_as_before(still: tuple[Client, StillClock]) -> None:
    """Prefect: ``test_increment_active_slots_without_decay_slots_do_not_decay``
    in tests/server/models/test_concurrency_limits_v2.py."""
    client, clock = still
    client.create_limit("plain", 3)
    with sync.concurrency("plain", occupy=2):
        clock.advance(5)  # time passes (well within the lease): nothing decays
        limit = client.read_limit("plain")
        assert (limit.active_slots, limit.exact_active_slots) == (2, 2.0)
