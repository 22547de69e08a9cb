"""Who this process is, as leases and waiters record it, and whether another is still alive.

Every slot lease and waiter row carries its holder's pid, host, process start
time and node (boot id and pid namespace). On the same node a holder whose
pid is gone, or was reused by another process (its start time differs), is
certainly dead, and the slot engine reaps it at once instead of waiting for
its lease to expire (``core.limits.is_dead`` decides; this module reads
``/proc``). A private top-level module: the store, the orchestrator and the
clients use it, and it imports nothing of headway but ``core``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from headway.core.limits import ProcessInfo

#: The largest pid a process can have (pid_t is a signed 32-bit integer).
_PID_MAX = 2**31 - 1


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; None when it is gone (or a zombie).

    Raises LookupError when the process exists but cannot be read (another
    user's process under ``hidepid``): uncertain, so callers treat it as alive.
    It never raises anything else, whatever ``pid`` a lease row carries: a
    sweep that raised here would stop reaping every other lease too.
    """
    if not isinstance(pid, int) or not 0 < pid <= _PID_MAX:
        # No kernel hands out such a pid (Linux caps pid_max at 2**22; pid_t is
        # 32 bits), so the row was forged or damaged and says nothing about its
        # holder. Not provably dead, then: like a holder on another node, it
        # waits for plain expiry. (Judging it dead instead would let any value
        # that os.kill reads as "every process" or "my group", such as 0 or -1,
        # decide a reap.) Expiry still bounds how long it holds anything.
        raise LookupError(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except (OSError, OverflowError, ValueError):
            raise LookupError(pid) from None
        raise LookupError(pid) from None
    except OSError:
        raise LookupError(pid) from None
    try:
        # The command name may contain spaces and parentheses: fields restart after the last ')'.
        fields = data[data.rindex(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            return None  # a zombie holds nothing any more
        return int(fields[19])
    except (ValueError, IndexError):
        raise LookupError(pid) from None  # a /proc format this code does not know: uncertain


def _node_key() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}/{namespace}"[:100]


_current: tuple[int, ProcessInfo] | None = None


def current_process() -> ProcessInfo:
    """This process as lease and waiter rows record it (recomputed after a fork)."""
    global _current
    pid = os.getpid()
    cached = _current
    if cached is not None and cached[0] == pid:
        return cached[1]
    try:
        start = process_start_time(pid) or 0
    except LookupError:
        start = 0
    info = ProcessInfo(pid=pid, host=socket.gethostname(), node=_node_key(), proc_start=start)
    _current = (pid, info)
    return info


def start_times(pids: Iterable[int]) -> dict[int, int | None]:
    """The start time of each of ``pids`` (None: gone); those that cannot be read are left out."""
    out: dict[int, int | None] = {}
    for pid in set(pids):
        try:
            out[pid] = process_start_time(pid)
        except LookupError:
            continue  # unknown: alive
    return out


__all__ = ["current_process", "process_start_time", "start_times"]
