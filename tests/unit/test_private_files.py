"""HEADWAY_HOME and the embedded store are readable by their owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from headway.core.states import Running
from headway.settings import get_settings
from headway.store.store import Store
from headway.store.wakeups import LocalWakeups


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_and_store_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual default, under which files were 0644
    try:
        home = tmp_path / "nested" / "home"
        store = Store.open(get_settings({"HEADWAY_HOME": str(home)}))
        try:
            store.create_flow_run(id="r", name="r", flow_name="f", state=Running())
            wakeups = LocalWakeups(home / "wake")
            assert wakeups.address is not None  # binds its socket under wake/
            wakeups.close()
            for directory in (tmp_path / "nested", home, home / "wake"):
                assert _mode(directory) == 0o700, directory
            files = [home / "headway.db", home / "headway.db-wal", home / "headway.db-shm"]
            files.append(home / "headway.db-writer")
            for file in [*files, home / "headway.migrate.lock"]:
                assert _mode(file) == 0o600, file
        finally:
            store.close()
    finally:
        os.umask(old)


def test_an_existing_home_is_left_as_it_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o750)
    home.chmod(0o750)
    Store.open(get_settings({"HEADWAY_HOME": str(home)})).close()
    assert _mode(home) == 0o750  # the user chose it
    assert _mode(home / "headway.db") == 0o600
