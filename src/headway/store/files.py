"""Files of the embedded store: readable and writable by their owner only.

``HEADWAY_HOME`` holds every run's parameters, results and logs, and the wake-up
sockets that let processes signal each other: nobody else on the machine may
read it. Directories are created 0700 and files 0600; SQLite gives the -wal
and -shm files of a database the permissions of the database file itself.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            pass  # another process made it first


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (then it is left as it is)."""
    private_directory(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
