"""Wake-ups in one process and across the processes of one machine (the embedded store).

:class:`LocalWakeups`: a ``threading.Event`` per waiter in this process, and,
across processes on the same machine, one Unix datagram socket per process
(``$HEADWAY_HOME/wake/<pid>-<random>.sock``, whose address each waiter row
records); the notifier ``sendto()``s the waiter id there. The PostgreSQL
transport (``store/wakeups_pg.py``) builds on it. ``store/wakeups.py`` says
which one a store uses.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from headway.core.limits import WakeTarget
from headway.store.files import private_directory

if TYPE_CHECKING:
    from headway.core.wakeups import Listener

# AF_UNIX paths are limited to 108 bytes; longer ones use the abstract namespace.
_MAX_PATH = 100
_ABSTRACT = "@"
_STOP = b"\x00stop"
_EARLY_MAX = 1024


class _EventListener:
    __slots__ = ("_event", "_hub", "_waiter_id")

    def __init__(self, hub: LocalWakeups, waiter_id: str, event: threading.Event) -> None:
        self._hub = hub
        self._waiter_id = waiter_id
        self._event = event

    def wait(self, timeout: float) -> bool:
        woken = self._event.wait(timeout)
        if woken:
            self._event.clear()
        return woken

    def close(self) -> None:
        self._hub._forget(self._waiter_id, self._event)


class _CallbackEvent(threading.Event):
    """A threading.Event that also runs a callback when set (from any thread)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def set(self) -> None:
        super().set()
        self._callback()


class LocalWakeups:
    """Events for this process's waiters; a Unix datagram socket for other processes'.

    ``directory`` (``$HEADWAY_HOME/wake``) enables cross-process wake-ups; without
    it only waiters of this process are notified and others rely on polling.
    """

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        # Notifications that arrived before their waiter started listening.
        self._early: dict[str, None] = {}
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._address: str | None = None
        self._socket: socket.socket | None = None
        self._path: Path | None = None
        self._sender: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- listening -----------------------------------------------------------------
    @property
    def address(self) -> str | None:
        """This process's socket address, bound on first use; None without a directory."""
        self._check_fork()
        if self._address is None and self._directory is not None and not self._closed:
            with self._lock:
                if self._address is None:
                    self._bind()
        return self._address

    def listen(self, waiter_id: str) -> Listener:
        """Register ``waiter_id``; a notification that already came is not lost."""
        self._check_fork()
        event = threading.Event()
        with self._lock:
            self._events[waiter_id] = event
            if waiter_id in self._early:
                del self._early[waiter_id]
                event.set()
        return _EventListener(self, waiter_id, event)

    def listen_callback(self, waiter_id: str, callback: Callable[[], None]) -> Listener:
        """Like :meth:`listen`, but each wake-up calls ``callback`` instead of waking a thread.

        A server's held requests wait on an asyncio event this sets through
        their loop, not on a thread each.
        """
        self._check_fork()
        event = _CallbackEvent(callback)
        with self._lock:
            self._events[waiter_id] = event
            if waiter_id in self._early:
                del self._early[waiter_id]
                event.set()
        return _EventListener(self, waiter_id, event)

    def _forget(self, waiter_id: str, event: threading.Event) -> None:
        with self._lock:
            if self._events.get(waiter_id) is event:
                del self._events[waiter_id]

    def wake(self, waiter_id: str) -> None:
        """Wake this process's waiter ``waiter_id`` now, or as soon as it listens."""
        self._check_fork()
        self._wake_local(waiter_id)

    def _wake_local(self, waiter_id: str) -> None:
        with self._lock:
            event = self._events.get(waiter_id)
            if event is None:
                self._early[waiter_id] = None
                if len(self._early) > _EARLY_MAX:
                    # Oldest first: these waiters were granted or left long ago.
                    for stale in list(self._early)[: _EARLY_MAX // 2]:
                        del self._early[stale]
                return
        event.set()

    # -- notifying -----------------------------------------------------------------
    def notify(self, targets: Sequence[WakeTarget]) -> None:
        """Wake each target: directly when it waits in this process, else by datagram."""
        if not targets:
            return
        self._check_fork()
        own = self._address
        for target in targets:
            if target.waiter_id in self._events or (
                target.address is not None and target.address == own
            ):
                self._wake_local(target.waiter_id)
            elif target.address and target.host == self._host:
                self._send(target.address, target.waiter_id.encode())

    def _send(self, address: str, payload: bytes) -> None:
        sender = self._sender
        if sender is None:
            sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            self._sender = sender
        target = "\0" + address[1:] if address.startswith(_ABSTRACT) else address
        try:
            sender.sendto(payload, target)
        except OSError:
            pass  # gone, or its queue is full: it re-checks on its own soon

    # -- the socket ----------------------------------------------------------------
    def _bind(self) -> None:
        assert self._directory is not None
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = self._directory / f"{token}.sock"
        try:
            private_directory(self._directory)
            _remove_stale_sockets(self._directory)
            if len(os.fsencode(path)) <= _MAX_PATH:
                sock.bind(str(path))
                self._path, self._address = path, str(path)
            else:
                sock.bind("\0headway-" + token)
                self._address = _ABSTRACT + "headway-" + token
        except OSError:
            sock.close()
            self._directory = None  # no cross-process wake-ups: waiters poll
            return
        self._socket = sock
        self._thread = threading.Thread(
            target=self._receive, args=(sock,), name="headway-wakeups", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                payload = sock.recv(512)
            except OSError:
                return
            if payload == _STOP or self._closed:
                return
            with contextlib.suppress(UnicodeDecodeError):
                self._wake_local(payload.decode())

    def close(self) -> None:
        """Stop the receiver thread and remove this process's socket."""
        if self._closed:
            return
        self._closed = True
        sock, self._socket = self._socket, None
        address = self._address
        if sock is not None and address is not None and os.getpid() == self._pid:
            self._send(address, _STOP)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=1.0)
            sock.close()
        if self._path is not None and os.getpid() == self._pid:
            with contextlib.suppress(OSError):
                self._path.unlink()
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()  # waiters re-check and find the store themselves

    def _check_fork(self) -> None:
        # A child inherits neither the receiver thread nor the right to the
        # parent's socket: start afresh with its own on demand.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._events = {}
            self._early = {}
            self._address = None
            self._socket = None
            self._path = None
            self._sender = None
            self._thread = None


def _remove_stale_sockets(directory: Path) -> None:
    # Sockets of processes that died without cleaning up (SIGKILL).
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        pid_text = entry.name.split("-", 1)[0]
        if not entry.name.endswith(".sock") or not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                entry.unlink()
        except OSError:
            continue


__all__ = ["LocalWakeups"]
