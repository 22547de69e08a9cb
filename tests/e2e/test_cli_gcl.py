"""``headway gcl`` and ``headway concurrency-limit`` as users run them.

The console script runs as a real subprocess for the main paths; the
bad-input matrix calls the same entry point in-process (``headway.cli.main``)
to stay fast. Bad input prints one ``Error:`` line, exits 2 and changes nothing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from headway.cli import main
from headway.client.base import get_client
from headway.concurrency.sync import concurrency
from headway.exceptions import LeaseLostError
from helpers.waiting import wait_until

HEADWAY = str(Path(sys.executable).parent / "headway")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess (same HEADWAY_HOME as the test)."""
    return subprocess.run(
        [HEADWAY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same entry point in-process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_lifecycle_through_the_console_script(capsys: pytest.CaptureFixture[str]) -> None:
    created = run("gcl", "create", "db", "--limit", "3")
    assert created.returncode == 0, created.stderr
    assert "'db'" in created.stdout
    code, _, err = cli(capsys, "global-concurrency-limit", "create", "api", "--limit", "5",
                       "--slot-decay-per-second", "2.5", "--disable")  # fmt: skip
    assert code == 0, err
    listed = run("gcl", "ls", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["db"]["limit"] == 3 and rows["db"]["active"] is True
    assert rows["api"]["slot_decay_per_second"] == 2.5 and rows["api"]["active"] is False
    assert {"name", "limit", "active_slots", "waiters", "active", "slot_decay_per_second"} <= set(
        rows["db"]
    )
    code, out, _ = cli(capsys, "gcl", "ls")
    assert code == 0 and "db" in out and "api" in out
    assert cli(capsys, "gcl", "update", "db", "--limit", "4", "--disable")[0] == 0
    assert get_client().read_limit("db").limit == 4
    assert not get_client().read_limit("db").active
    assert cli(capsys, "gcl", "enable", "db")[0] == 0
    assert get_client().read_limit("db").active
    assert cli(capsys, "gcl", "disable", "db")[0] == 0
    assert not get_client().read_limit("db").active
    code, _, err = cli(capsys, "gcl", "delete", "db", "--yes")
    assert code == 0, err
    assert [lim.name for lim in get_client().list_limits()] == ["api"]


def test_inspect_shows_holders_and_waiters_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    client = get_client()
    client.create_limit("db", 1)
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        with concurrency("db", occupy=1, priority=3):
            pass

    with concurrency("db"):
        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        assert waiting.wait(10)
        wait_until(lambda: bool(client.inspect_limit("db").waiters), "the waiter queued")
        shown = run("gcl", "inspect", "db", "-o", "json")
        assert shown.returncode == 0, shown.stderr
        detail = json.loads(shown.stdout)
        assert (detail["name"], detail["limit"], detail["active"]) == ("db", 1, True)
        assert detail["active_slots"] == 1 and detail["slot_decay_per_second"] == 0
        [holder] = detail["holders"]
        assert holder["holder"] == "code" and holder["pid"] == os.getpid()
        assert holder["host"] and holder["slots"] == 1 and holder["since"] and holder["expires"]
        [queued] = detail["waiters"]
        assert (queued["position"], queued["slots"], queued["priority"]) == (1, 1, 3)
        assert queued["since"]
        # The one slot has been held all the while someone waited.
        used = detail["utilization_while_waiting"]
        assert used["share"] == pytest.approx(1.0, abs=0.02) and used["window_seconds"] == 60
        code, out, _ = cli(capsys, "gcl", "inspect", "db")
        assert code == 0 and str(os.getpid()) in out
        assert "utilization while waiting (last 60 s): " in out and " % of its slots" in out
    t.join(10)
    code, out, _ = cli(capsys, "gcl", "inspect", "db", "-o", "json")
    after = json.loads(out)
    assert after["holders"] == [] and after["waiters"] == [] and after["active_slots"] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["gcl", "create", "x", "--limit", "abc"],
        ["gcl", "create", "x", "--limit", "-1"],
        ["gcl", "create", "", "--limit", "2"],
        ["gcl", "create", "y" * 201, "--limit", "2"],
        ["gcl", "create", "db", "--limit", "2"],  # already exists
        ["gcl", "create", "x", "--limit", "2", "--slot-decay-per-second", "-1"],
        ["gcl", "create", "x"],  # no --limit
        ["gcl", "inspect", "unknown"],
        ["gcl", "inspect", "db", "-o", "yaml"],
        ["gcl", "ls", "-o", "xml"],
        ["gcl", "update", "unknown", "--limit", "3"],
        ["gcl", "update", "db", "--limit", "-1"],  # 0 is allowed: nothing is admitted
        ["gcl", "update", "db", "--limit", "abc"],
        ["gcl", "update", "db"],  # nothing to change
        ["gcl", "enable", "unknown"],
        ["gcl", "disable", "unknown"],
        ["gcl", "delete", "unknown", "--yes"],
        ["concurrency-limit", "create", "io", "-1"],
        ["concurrency-limit", "create", "io", "abc"],
        ["concurrency-limit", "create", "", "1"],
        ["concurrency-limit", "inspect", "unknown"],
        ["concurrency-limit", "reset", "unknown"],
        ["concurrency-limit", "delete", "unknown"],
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    get_client().create_limit("db", 1)
    before = [(lim.name, lim.limit, lim.active) for lim in get_client().list_limits()]
    code, out, err = cli(capsys, *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in out + err
    assert [(lim.name, lim.limit, lim.active) for lim in get_client().list_limits()] == before


def test_delete_is_refused_while_held_unless_forced(capsys: pytest.CaptureFixture[str]) -> None:
    get_client().create_limit("db", 2)
    with pytest.raises(LeaseLostError), concurrency("db"):
        code, _, err = cli(capsys, "gcl", "delete", "db", "--yes")
        assert code == 2 and "holder" in err
        assert get_client().read_limit("db").limit == 2
        code, _, err = cli(capsys, "gcl", "delete", "db", "--yes", "--force")
        assert code == 0, err
    # Leaving the block raised LeaseLostError (the slots were taken away).
    assert get_client().list_limits() == []


class _Terminal(io.StringIO):
    """Typed answers on what looks like a terminal (a person is there to ask)."""

    def isatty(self) -> bool:
        return True


def test_delete_asks_first_at_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    get_client().create_limit("db", 2)
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    code, _, err = cli(capsys, "gcl", "delete", "db")
    assert code != 0 and "aborted" in err
    assert [lim.name for lim in get_client().list_limits()] == ["db"]
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    code, _, err = cli(capsys, "gcl", "delete", "db")
    assert code == 0, err
    assert get_client().list_limits() == []


def test_task_tag_limits_cli(capsys: pytest.CaptureFixture[str]) -> None:
    created = run("concurrency-limit", "create", "db", "2")
    assert created.returncode == 0, created.stderr
    assert get_client().read_limit("tag:db").limit == 2
    code, out, _ = cli(capsys, "concurrency-limit", "ls", "-o", "json")
    assert [r["name"] for r in json.loads(out)] == ["tag:db"]
    code, out, _ = cli(capsys, "concurrency-limit", "ls")
    assert code == 0 and "db" in out
    from headway.concurrency.tags import hold_tag_slots

    with hold_tag_slots(get_client(), ["db"], task_run_id="task-run-7", flow_run_id=None):
        code, out, err = cli(capsys, "concurrency-limit", "inspect", "db", "-o", "json")
        assert code == 0, err
        [holder] = json.loads(out)["holders"]
        assert holder["holder"] == "task_run:task-run-7"
        code, out, err = cli(capsys, "concurrency-limit", "reset", "db")
        assert code == 0, err
        assert get_client().read_limit("tag:db").active_slots == 0
        assert get_client().inspect_limit("tag:db").holders == ()
    code, out, err = cli(capsys, "concurrency-limit", "delete", "db")
    assert code == 0, err
    assert get_client().list_limits() == []
