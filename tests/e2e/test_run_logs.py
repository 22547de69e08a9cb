"""HEADWAY_LOGGING_LEVEL quiets the console; the store keeps every run log line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROGRAM = """
import json
from headway import flow, get_run_logger
from headway.client.base import get_client
from headway.context import get_flow_run_context

@flow
def chatty():
    logger = get_run_logger()
    logger.debug("debug line")
    logger.info("info line")
    logger.warning("warning line")
    return get_flow_run_context().flow_run_id

run_id = chatty()
print(json.dumps([line.message for _, line in get_client().read_logs(run_id)]))
"""


@pytest.mark.parametrize(
    ("level", "stored", "shown", "hidden"),
    [
        ("WARNING", ["info line", "warning line"], ["warning line"], ["info line"]),
        ("INFO", ["info line", "warning line"], ["info line", "warning line"], ["debug line"]),
        ("DEBUG", ["debug line", "info line", "warning line"], ["debug line"], []),
    ],
)
def test_the_level_sets_the_console_not_what_is_recorded(
    level: str, stored: list[str], shown: list[str], hidden: list[str]
) -> None:
    env = {**os.environ, "HEADWAY_LOGGING_LEVEL": level}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)
    assert [m for m in recorded if m.endswith(" line")] == stored
    for line in shown:
        assert line in done.stderr
    for line in hidden:
        assert line not in done.stderr
