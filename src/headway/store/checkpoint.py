"""The thread that checkpoints an embedded store's WAL for one process.

A process's writes do not run checkpoints in their commits: every
:data:`CHECKPOINT_EVERY_COMMITS` of its own commits it asks this thread, which
runs a PASSIVE checkpoint on a connection of its own (see ``store/db.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from headway.store.dialects import connect_sqlite
from headway.store.queries import infra as q

if TYPE_CHECKING:
    from headway.store.db import Database

logger = logging.getLogger("headway.store")


#: A SQLite process asks for a checkpoint after this many write commits of its own
#: (each writes a few pages: about SQLite's own default of 1000 pages of WAL).
CHECKPOINT_EVERY_COMMITS = 200


class Checkpointer:
    """The thread that checkpoints a SQLite database's WAL for one process, when asked."""

    def __init__(self, db: Database) -> None:
        self.pid = os.getpid()
        self.due = threading.Event()
        self._db = weakref.ref(db)
        threading.Thread(target=self._run, name="headway-checkpoint", daemon=True).start()

    def _run(self) -> None:
        # A connection of its own, closed here and only here: Database.close()
        # closes the connections of every thread, and one closed by another
        # thread while a checkpoint ran on it crashed the process (SIGSEGV).
        conn: Any = None
        try:
            while True:
                self.due.wait()
                self.due.clear()
                db = self._db()
                if db is None or db._checkpointer is not self:
                    return
                try:
                    if conn is None:
                        conn = connect_sqlite(db.url, db.busy_timeout)
                    conn.execute(q.WAL_CHECKPOINT_PASSIVE).fetchall()
                except Exception as exc:  # the next one tries again; nothing is lost
                    logger.debug("checkpoint failed: %s", exc)
                del db
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


__all__ = ["CHECKPOINT_EVERY_COMMITS", "Checkpointer"]
