"""The timed-out-body tests, run in an interpreter of their own (see tests/conftest.py).

They pass or fail there exactly as they would here; this test fails with
their output if any of them fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
#: The same files tests/conftest.py leaves out of the shared run.
ISOLATED = ("unit/test_timeout_lingering.py", "compat/test_compat_timeout_slots.py")


@pytest.mark.timeout(300)
def test_the_timed_out_body_tests_pass_in_their_own_interpreter(tmp_path: Path) -> None:
    assert all((TESTS / name).is_file() for name in ISOLATED)
    env = {**os.environ, "HEADWAY_ISOLATED_TESTS": "1", "HEADWAY_HOME": str(tmp_path)}
    env.pop("HEADWAY_API_URL", None)
    env.pop("HEADWAY_DATABASE_URL", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-p",
            "no:cov",
            "-o",
            "addopts=-p no:schemathesis",
            *(str(TESTS / name) for name in ISOLATED),
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
