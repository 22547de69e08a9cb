"""``headway work-pool`` and ``headway work-queue`` as users type them (in process)."""

from __future__ import annotations

import json
from typing import Any

from helpers.cli import headway


def ok(*args: str) -> str:
    result = headway(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def bad(*args: str, message: str) -> None:
    result = headway(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def pool_json(name: str) -> Any:
    return json.loads(ok("work-pool", "inspect", name, "-o", "json"))


def test_work_pool_commands() -> None:
    assert "unlimited" in ok("work-pool", "create", "etl")
    pool = pool_json("etl")
    assert pool["name"] == "etl"
    assert pool["concurrency_limit"] is None
    assert (pool["running"], pool["waiting"]) == (0, 0)
    assert [q["name"] for q in pool["queues"]] == ["default"]
    ok("work-pool", "set-concurrency-limit", "etl", "3")
    assert pool_json("etl")["concurrency_limit"] == 3
    ok("work-pool", "set-concurrency-limit", "etl", "--limit", "5")
    assert pool_json("etl")["concurrency_limit"] == 5
    ok("work-pool", "pause", "etl")
    assert pool_json("etl")["paused"] is True
    ok("work-pool", "resume", "etl")
    assert "etl" in ok("work-pool", "ls")
    assert [p["name"] for p in json.loads(ok("work-pool", "ls", "-o", "json"))] == ["etl"]
    ok("work-pool", "clear-concurrency-limit", "etl")
    assert pool_json("etl")["concurrency_limit"] is None
    ok("work-pool", "delete", "etl")
    bad("work-pool", "inspect", "etl", message="no work pool named 'etl'")


def test_bad_limits_change_nothing() -> None:
    # 0 is a limit (no runs start, as in Prefect); below it is refused.
    bad("work-pool", "create", "etl", "--concurrency-limit", "-1", message="at least 0")
    assert json.loads(ok("work-pool", "ls", "-o", "json")) == []
    ok("work-pool", "create", "etl", "--concurrency-limit", "2")
    for limit in ("-1", "-5"):
        bad("work-pool", "set-concurrency-limit", "etl", limit, message="at least 0")
        bad("work-pool", "set-concurrency-limit", "etl", "--limit", limit, message="at least 0")
        bad("work-queue", "create", "q", "--pool", "etl", "--limit", limit, message="at least 0")
    assert pool_json("etl")["concurrency_limit"] == 2
    assert [q["name"] for q in pool_json("etl")["queues"]] == ["default"]


def test_unknown_pool_and_duplicates() -> None:
    bad("work-pool", "set-concurrency-limit", "nope", "2", message="no work pool named 'nope'")
    bad("work-queue", "create", "q", "--pool", "nope", message="no work pool named 'nope'")
    bad("worker", "start", "--pool", "nope", message="no work pool named 'nope'")
    ok("work-pool", "create", "etl")
    bad("work-pool", "create", "etl", message="already exists")
    bad("work-pool", "set-concurrency-limit", "etl", message="give the limit")
    bad("worker", "start", "--pool", "etl", "--queue", "nope", message="no queue named 'nope'")
    bad("worker", "start", "--pool", "etl", "--limit", "0", message="at least 1")


def test_work_queue_commands() -> None:
    ok("work-pool", "create", "etl")
    ok("work-queue", "create", "urgent", "--pool", "etl", "--priority", "10", "--limit", "2")
    queue = json.loads(ok("work-queue", "inspect", "urgent", "--pool", "etl", "-o", "json"))
    assert (queue["priority"], queue["concurrency_limit"], queue["paused"]) == (10, 2, False)
    ok("work-queue", "set-concurrency-limit", "urgent", "4", "--pool", "etl")
    ok("work-queue", "set-priority", "urgent", "3", "--pool", "etl")
    ok("work-queue", "pause", "urgent", "--pool", "etl")
    queue = json.loads(ok("work-queue", "inspect", "urgent", "--pool", "etl", "-o", "json"))
    assert (queue["priority"], queue["concurrency_limit"], queue["paused"]) == (3, 4, True)
    ok("work-queue", "clear-concurrency-limit", "urgent", "--pool", "etl")
    ok("work-queue", "resume", "urgent", "--pool", "etl")
    names = [q["name"] for q in json.loads(ok("work-queue", "ls", "--pool", "etl", "-o", "json"))]
    assert names == ["urgent", "default"]  # by priority
    bad("work-queue", "delete", "default", "--pool", "etl", message="cannot be deleted")
    ok("work-queue", "delete", "urgent", "--pool", "etl")
    bad("work-queue", "inspect", "urgent", "--pool", "etl", message="no queue named 'urgent'")
