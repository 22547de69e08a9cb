"""Wake-ups across processes and machines on PostgreSQL: ``LISTEN``/``NOTIFY``.

Each process that has waiters listens on a channel of its own
(``headway_wake_<random>``); its address, stored on its waiter rows, is
``pg:<channel>``. Whoever frees slots sends the ids of the waiters that can
now be granted to their channels with ``NOTIFY`` inside the releasing
transaction (:func:`notify_in_transaction`), so PostgreSQL delivers them
exactly when the change commits, to whichever server or worker machine waits.

One listener thread per process receives them on the store's dedicated
connection (the one of its ``HEADWAY_DATABASE_POOL_SIZE`` kept outside the pool:
a session that LISTENs cannot go back to a pool) and wakes the waiters of this
process through :class:`~headway.store.wakeups.LocalWakeups`' machinery. The
few NOTIFYs sent after a commit borrow a pooled connection like any statement.
A notification is a hint: if the listening connection drops, every local
waiter is woken to re-check, and the connection is opened again.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from headway._backoff import Backoff
from headway.core.limits import WakeTarget
from headway.store.db import Database, Tx
from headway.store.queries import infra as q
from headway.store.wakeups_local import LocalWakeups

logger = logging.getLogger("headway.wakeups")

PREFIX = "pg:"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
_PAYLOAD_MAX = 7000
_READY_TIMEOUT = 10.0
#: Pauses before the listener connects again after losing its connection.
LISTEN_BACKOFF = Backoff(first=0.1, cap=5.0)


def notify_in_transaction(tx: Tx, targets: Sequence[WakeTarget]) -> list[WakeTarget]:
    """Send the targets that listen on PostgreSQL a NOTIFY, from inside the releasing transaction.

    The notifications go out when the transaction commits, and never if it
    rolls back. Returns the targets with the notified ones' addresses cleared:
    whoever gets the list after the commit still wakes waiters of its own
    process directly, and sends nothing twice. Elsewhere (SQLite) the targets
    come back unchanged, to be notified after the commit.
    """
    by_channel: dict[str, list[str]] = defaultdict(list)
    for target in targets:
        address = target.address
        if address is not None and address.startswith(PREFIX):
            by_channel[address[len(PREFIX) :]].append(target.waiter_id)
    if not by_channel or tx.dialect.notify_sql is None:
        return list(targets)
    for channel, ids in by_channel.items():
        for payload in _payloads(ids):
            tx.notify(channel, payload)
    return [
        WakeTarget(t.waiter_id, None, t.host, t.pid)
        if t.address is not None and t.address.startswith(PREFIX)
        else t
        for t in targets
    ]


def _payloads(ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    for waiter_id in ids:
        if current and size + len(waiter_id) + 1 > _PAYLOAD_MAX:
            out.append(",".join(current))
            current, size = [], 0
        current.append(waiter_id)
        size += len(waiter_id) + 1
    if current:
        out.append(",".join(current))
    return out


class PostgresWakeups(LocalWakeups):
    """Waiters of this process woken by ``NOTIFY`` on this process's own channel."""

    def __init__(self, db: Database) -> None:
        super().__init__(None)
        self._db = db
        self._channel = f"headway_wake_{secrets.token_hex(8)}"
        self._listening = threading.Event()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self._owner = os.getpid()

    @property
    def channel(self) -> str:
        """The channel this process listens on."""
        return self._channel

    @property
    def address(self) -> str | None:
        """``pg:<channel>``, once this process is listening (None if it cannot: waiters poll)."""
        self._check_pg_fork()
        if self._closed:
            return None
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    self._listener = threading.Thread(
                        target=self._listen_loop, name="headway-pg-wakeups", daemon=True
                    )
                    self._listener.start()
        # Only an address that is already listened on may be stored on a waiter
        # row: a NOTIFY sent before LISTEN would be lost.
        if not self._listening.wait(_READY_TIMEOUT):
            return None
        return PREFIX + self._channel

    def notify(self, targets: Sequence[WakeTarget]) -> None:
        """Wake this process's targets directly; send the others a NOTIFY now.

        The store already notified, inside its transaction, the targets it found
        (see :func:`notify_in_transaction`); this path serves targets named after
        the commit, such as a cancelled request's own waiting call.
        """
        if not targets:
            return
        self._check_pg_fork()
        own = PREFIX + self._channel
        remote: list[WakeTarget] = []
        for target in targets:
            if target.waiter_id in self._events or target.address == own:
                self._wake_local(target.waiter_id)
            elif target.address is not None and target.address.startswith(PREFIX):
                remote.append(target)
        if remote:
            self._send_notifies(remote)

    def _send_notifies(self, targets: Sequence[WakeTarget]) -> None:
        by_channel: dict[str, list[str]] = defaultdict(list)
        for target in targets:
            assert target.address is not None
            by_channel[target.address[len(PREFIX) :]].append(target.waiter_id)
        try:
            for channel, ids in by_channel.items():
                for payload in _payloads(ids):
                    self._db.execute_alone(
                        q.SEND_NOTIFICATION, {"channel": channel, "payload": payload}
                    )
        except Exception as exc:  # best effort: the waiter re-checks on its own
            logger.debug("wake-up not sent: %s", exc, extra={"action": "wakeup"})

    def _listen_loop(self) -> None:
        # A stop interrupts the pause; the loop then sees it.
        retry = LISTEN_BACKOFF.start(sleep=self._stop.wait)
        while not self._stop.is_set():
            try:
                with self._db.dedicated() as conn:
                    self._listen(conn)
                    retry.reset()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if self._stop.is_set():
                                break
                            for waiter_id in note.payload.split(","):
                                if waiter_id:
                                    self._wake_local(waiter_id)
            except Exception as exc:
                if self._stop.is_set():
                    break
                logger.warning(
                    "wake-up listener lost its connection; reconnecting: %s",
                    exc,
                    extra={"action": "wakeup"},
                )
                self._wake_all()
                retry.pause()

    def _listen(self, conn: Any) -> None:
        conn.execute(q.listen_on(self._channel))
        if self._listening.is_set():
            # Reconnected: notifications may have been missed meanwhile.
            self._wake_all()
        self._listening.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()

    def close(self) -> None:
        """Stop listening (the listener closes its connection as it ends)."""
        self._stop.set()
        listener = self._listener
        if (
            listener is not None
            and os.getpid() == self._owner
            and listener is not threading.current_thread()
        ):
            if listener.is_alive() and self._listening.is_set():
                # An empty notification on its own channel ends the listener's
                # wait at once, instead of at its next one-second timeout.
                try:
                    self._db.execute_alone(q.NUDGE_LISTENER, {"channel": self._channel})
                except Exception as exc:  # it then stops at its timeout
                    logger.debug("listener not nudged: %s", exc, extra={"action": "wakeup"})
            listener.join(timeout=3.0)
        super().close()

    def _check_pg_fork(self) -> None:
        # A forked child has no listener thread and must not share connections.
        if self._owner != os.getpid():
            self._owner = os.getpid()
            self._check_fork()
            self._channel = f"headway_wake_{secrets.token_hex(8)}"
            self._listening = threading.Event()
            self._listener = None
            self._stop = threading.Event()
