"""Fixtures shared by every test: an isolated HEADWAY_HOME and a fresh default client."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests interrupt their child processes with SIGINT (Ctrl-C). A suite started
# in the background of a non-interactive shell (nohup, `cmd &` in a script)
# inherits SIGINT ignored, and every child would inherit that too and never see
# it; a handler here is reset to the default in each child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The file of a new embedded store, made once per test process by headway itself.

    A store is created by running every migration through Alembic: ~0.07 s of
    CPU in a process that has Alembic loaded, ~0.7 s in a new ``headway``
    process (most of it importing Alembic). Each test's HEADWAY_HOME starts with
    a copy of this one instead, as a user's does after the first command; tests
    of what the first command does mark themselves ``fresh_store``.
    """
    from headway.settings import get_settings
    from headway.store.store import Store

    home = tmp_path_factory.mktemp("store-template")
    Store.open(get_settings({"HEADWAY_HOME": str(home)})).close()
    leftovers = sorted(p.name for p in home.iterdir() if p.name.startswith("headway.db-"))
    assert leftovers == [], f"the template store was not closed cleanly: {leftovers}"
    return (home / "headway.db").read_bytes()


@pytest.fixture(autouse=True)
def headway_home(
    request: pytest.FixtureRequest,
    store_template: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """Every test gets its own embedded store; nothing touches ~/.headway."""
    home = tmp_path / "headway-home"
    monkeypatch.setenv("HEADWAY_HOME", str(home))
    if request.node.get_closest_marker("fresh_store") is None:
        from headway.store.files import FILE_MODE, private_directory

        private_directory(home)
        fd = os.open(home / "headway.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(store_template)
    for var in ("HEADWAY_API_URL", "HEADWAY_DATABASE_URL", "HEADWAY_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    from headway.client.base import set_default_client

    old = set_default_client(None)
    try:
        yield home
    finally:
        current = set_default_client(old)
        if current is not None and current is not old:
            current.close()


#: Tests of a timed-out body blocked in C code. Such a body keeps an exception
#: pending for its thread, and CPython 3.11 then slows every other thread of the
#: process until it is delivered (3.12 fixed it): inside a pytest worker that has
#: run hundreds of tests (their threads, coverage's tracer) they crawled past
#: their timeout. They run in an interpreter of their own instead, through
#: tests/unit/test_timeouts_isolated.py; HEADWAY_ISOLATED_TESTS=1 collects them.
ISOLATED = ("unit/test_timeout_lingering.py", "compat/test_compat_timeout_slots.py")
collect_ignore = [] if os.environ.get("HEADWAY_ISOLATED_TESTS") == "1" else list(ISOLATED)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first: tests marked ``slow``, then the other e2e and stress tests.

    ``make test`` hands tests to its workers one by one as each frees up
    (pytest-xdist's ``--dist load``): started first, the few tests that take
    half a minute each run side by side at the start instead of one of them
    starting last and keeping the whole run waiting for it.
    """

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is not None:
            return 0
        area = item.nodeid.split("/")[1] if item.nodeid.startswith("tests/") else ""
        return 1 if area in ("e2e", "stress") else 2

    items.sort(key=rank)
