"""Tasks importable by name, for ProcessPoolTaskRunner tests (worker processes import them)."""

from __future__ import annotations

import os

from headway import get_run_logger, task


@task
def whoami(x: int) -> tuple[int, int]:
    """The worker's pid, and x squared; logs a line from the worker."""
    get_run_logger().info("squaring %d in pid %d", x, os.getpid())
    return os.getpid(), x * x


@task
def fails_in_worker() -> None:
    """Always raises, in the worker."""
    raise ArithmeticError("worker says no")


_attempt_file = "HEADWAY_TEST_ATTEMPT_FILE"


@task(retries=1)
def fails_once() -> str:
    """Fails on its first attempt (counted in a file the test names), then succeeds."""
    path = os.environ[_attempt_file]
    with open(path, "a+") as fh:
        fh.seek(0)
        count = len(fh.read())
        fh.write("x")
    if count == 0:
        raise ConnectionError("first attempt")
    return "second attempt ok"


@task
def add_in_worker(x: int, y: int) -> int:
    """x + y, computed in a worker process."""
    return x + y
