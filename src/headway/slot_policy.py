"""The Orchestrator's slot operations: validate, attempt, wait for a wake-up, notify.

Mixed into :class:`headway.orchestrator.Orchestrator`, so every client (the
embedded client (the Orchestrator itself), and the HTTP server for
``HttpClient``) gets the same behaviour. Each store call is one short
transaction; waiting happens between them, never inside one. A bounded wait
(``timeout``) lets the HTTP server answer a long poll: the request keeps its
place in the queue (its ``waiter_id``) between calls.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence

from headway._process import current_process
from headway.core.attempts import Attempt
from headway.core.limits import (
    HOLDER_KINDS,
    MODES,
    UTILIZATION_WINDOW_SECONDS,
    LimitDetail,
    Mode,
    ProcessInfo,
    SlotGrant,
    SlotWait,
    WakeTarget,
    next_poll_interval,
    validate_lease_seconds,
    validate_names,
    validate_occupy,
    validate_priority,
    validate_process,
    validate_timeout,
)
from headway.core.models import Limit
from headway.core.wakeups import Listener, Wakeups
from headway.exceptions import RunEnded, ValidationError
from headway.settings import Settings
from headway.store.store import Store

#: The longest a waiter goes with cheap looks only, between two full attempts.
_FULL_EVERY = 1.0
#: How many waiter ids a process remembers (taken grants, known waiters) before
#: forgetting the oldest half.
_REMEMBERED = 65536
#: Guards the first use of a process's :class:`_Local`.
_SETUP = threading.Lock()
_GONE = "the request left the queue (cancelled, or expired while its holder was paused)"


@dataclasses.dataclass
class _Local:
    """What one process keeps of its waiters in memory (a forked child starts afresh)."""

    pid: int
    # Waiter ids cancelled in this process, so a call still waiting as one of
    # them stops even when it re-queued after the cancel (insertion order: oldest first).
    cancelled: dict[str, None] = dataclasses.field(default_factory=dict)
    # Waiter ids this process saw queued: a call resuming one looks for a grant first.
    known: dict[str, None] = dataclasses.field(default_factory=dict)
    # Waiters of this process that learnt of their grant with a read and left it
    # in place (``Slots.read_handoff``), by waiter id (``taken``) and by lease id
    # (``leases``): a cancel of one must not give back the slots it now holds.
    # Guarded by ``lock``, which a look holds from its read to its mark and a
    # cancel from its check to its mark.
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    taken: dict[str, str | None] = dataclasses.field(default_factory=dict)
    leases: dict[str, str] = dataclasses.field(default_factory=dict)


class SlotPolicy:
    """Limits and slots, over a Store, with wake-ups."""

    store: Store
    settings: Settings
    _wakeups: Wakeups | None = None
    # Made on first use in each process (a child forked while its lock was held
    # starts afresh).
    _local_state: _Local | None = None

    # -- wake-ups ------------------------------------------------------------------
    @property
    def wakeups(self) -> Wakeups:
        """How this process is woken and wakes others (created on first use)."""
        if self._wakeups is None:
            self._wakeups = self.store.open_wakeups()
        return self._wakeups

    def close_wakeups(self) -> None:
        """Stop this process's wake-up receiver (its thread, socket or connections)."""
        wakeups, self._wakeups = self._wakeups, None
        if wakeups is not None:
            wakeups.close()

    def set_wakeups(self, wakeups: Wakeups) -> None:
        """Use another transport (the server's PostgreSQL LISTEN/NOTIFY)."""
        self._wakeups = wakeups

    def _notify(self, targets: Sequence[WakeTarget]) -> None:
        if targets:
            self.wakeups.notify(targets)

    # -- limits --------------------------------------------------------------------
    def create_limit(
        self,
        name: str,
        limit: int,
        *,
        active: bool = True,
        slot_decay_per_second: float = 0.0,
        active_slots: int = 0,
    ) -> Limit:
        """Create a limit of any scope (global names, ``tag:<tag>``, ...)."""
        return self.store.limits.create_limit(
            name,
            limit,
            active=active,
            slot_decay_per_second=slot_decay_per_second,
            active_slots=active_slots,
        )

    def read_limit(self, name: str) -> Limit:
        """One limit; ObjectNotFound if unknown."""
        return self.store.limits.read_limit(name)

    def list_limits(self, *, prefix: str | None = None) -> list[Limit]:
        """Limits by name, after reaping dead holders so counts are true."""
        self.sweep_slots()
        return self.store.limits.list_limits(prefix=prefix)

    def update_limit(
        self,
        name: str,
        *,
        limit: int | None = None,
        active: bool | None = None,
        slot_decay_per_second: float | None = None,
        active_slots: int | None = None,
    ) -> Limit:
        """Change a limit live; waiters that now fit are woken."""
        updated, wake = self.store.limits.update_limit(
            name,
            limit=limit,
            active=active,
            slot_decay_per_second=slot_decay_per_second,
            active_slots=active_slots,
        )
        self._notify(wake)
        return updated

    def delete_limit(self, name: str, *, force: bool = False) -> None:
        """Delete a limit; ConflictError while it has holders unless ``force``."""
        self._notify(self.store.limits.delete_limit(name, force=force))

    def reset_limit(self, name: str) -> Limit:
        """Free every slot of a limit (its holders lose their leases)."""
        reset, wake = self.store.limits.reset_limit(name)
        self._notify(wake)
        return reset

    def inspect_limit(self, name: str) -> LimitDetail:
        """A limit with its holders and waiters, after reaping dead ones."""
        self.store.limits.read_limit(name)  # ObjectNotFound before anything is written
        self.sweep_slots([name])
        detail = self.store.limits.inspect_limit(name)
        used = self.store.events.utilization([name], UTILIZATION_WINDOW_SECONDS).get(name)
        return dataclasses.replace(detail, utilization=used)

    # -- slots ---------------------------------------------------------------------
    def acquire_slots(
        self,
        names: str | Sequence[str],
        slots: int = 1,
        *,
        mode: Mode = "concurrency",
        priority: int = 0,
        holder_kind: str = "code",
        holder_id: str | None = None,
        process: ProcessInfo | None = None,
        lease_seconds: float | None = None,
        timeout: float | None = 0.0,
        waiter_id: str | None = None,
        strict: bool = False,
    ) -> SlotGrant | SlotWait:
        """Take ``slots`` of every limit in ``names``, all or nothing; wait up to ``timeout``.

        ``timeout=None`` waits until granted; ``0`` makes one attempt. Without a
        ``waiter_id`` the call owns its place in the queue and leaves no trace
        when it returns ungranted. With one, the request stays queued under that
        id between calls (long polling): call again with the same id to keep
        waiting, or :meth:`cancel_slot_wait` to give up.
        """
        checked = validate_names(names)
        occupy = validate_occupy(slots)
        priority = validate_priority(priority)
        if mode not in MODES:
            raise ValidationError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if holder_kind not in HOLDER_KINDS:
            raise ValidationError(f"unknown holder kind {holder_kind!r}")
        wait_for = validate_timeout(timeout)
        lease = validate_lease_seconds(
            self.settings.concurrency_lease_seconds if lease_seconds is None else lease_seconds
        )
        owner = current_process() if process is None else validate_process(process)
        owned = waiter_id is None
        # A single owned attempt never queues: nothing would be left to clean up.
        may_queue = not (owned and wait_for == 0)
        wid = waiter_id or (os.urandom(16).hex() if may_queue else "")
        deadline = None if wait_for is None else time.monotonic() + wait_for
        new_waiter = owned
        listener: Listener | None = None
        interval: float | None = None
        finished = False
        local = self._local()
        cancelled = local.cancelled
        # Between full attempts a waiter only looks whether a release handed it
        # the slots (direct handoff): a read, no write lock, no re-check storm.
        # A full attempt still runs when woken, for a rate limit's decay, and at
        # least every _FULL_EVERY seconds (it refreshes the waiter row and
        # covers a room no release announced, e.g. a waiter ahead that expired).
        look_only = False
        # A request resumed (a long poll's next call, a woken waiter) looks for a
        # grant handed to it before making a full attempt.
        known = local.known
        look_first = bool(wid) and not owned and wid in known
        last_full = 0.0
        attempt: Attempt | None = None
        try:
            while True:
                if wid and wid in cancelled:
                    finished = True
                    if wid not in local.taken:
                        self._notify(self.store.slots.cancel_slot_wait(wid))
                    return SlotWait(wid, (_GONE,), None)
                handed = None
                if look_only or look_first:
                    handed = self._look(wid, checked, holder_kind)
                if handed is not None:
                    attempt = handed
                elif not look_only or attempt is None:
                    attempt = self.store.slots.acquire_slots(
                        checked,
                        occupy,
                        mode=mode,
                        priority=priority,
                        holder_kind=holder_kind,
                        holder_id=holder_id,
                        process=owner,
                        lease_seconds=lease,
                        waiter_id=wid,
                        new_waiter=new_waiter,
                        may_queue=may_queue,
                        wake_address=self.wakeups.address if wid else None,
                        strict=strict,
                    )
                    last_full = time.monotonic()
                    self._notify(attempt.wake)
                if attempt.refused:
                    finished = True
                    raise RunEnded(attempt.refused)
                if attempt.grant is not None:
                    finished = True
                    return attempt.grant
                if attempt.gone:
                    finished = True
                    return SlotWait(wid, (_GONE,), None)
                assert attempt.wait is not None
                if wid not in known:
                    known[wid] = None
                    if len(known) > _REMEMBERED:
                        for old in list(known)[: _REMEMBERED // 2]:
                            del known[old]
                # Later attempts of this call must not re-queue: rows that vanish
                # mean the request was cancelled (or expired), and the caller decides.
                new_waiter, may_queue = False, False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    finished = not owned
                    return attempt.wait
                if listener is None:
                    listener = self.wakeups.listen(wid)
                interval = next_poll_interval(interval)
                pause = interval
                if attempt.wait.retry_after is not None:
                    # A rate limit: sleep until enough will have decayed (refreshing
                    # the waiter row well within its TTL), unless woken sooner.
                    pause = max(pause, min(attempt.wait.retry_after, self._refresh_every()))
                if remaining is not None:
                    pause = min(pause, remaining)
                woken = listener.wait(pause)
                if woken:
                    interval = None
                look_first = woken
                look_only = (
                    not woken
                    and attempt.wait.retry_after is None
                    and time.monotonic() - last_full < min(_FULL_EVERY, self._refresh_every())
                )
        finally:
            if listener is not None:
                listener.close()
            if owned and not finished and wid:
                # Timed out, failed or interrupted: leave the queue so nobody waits on us.
                self.cancel_slot_wait(wid)

    def _look(self, wid: str, names: Sequence[str], holder_kind: str) -> Attempt | None:
        """Whether a release handed ``wid`` its slots: the grant, or None.

        Where the store allows (SQLite), a read that leaves the grant in place,
        marked taken in this process so a cancel does not give it back; its
        release removes it. A task run's grant is taken with a write as
        elsewhere: the end of its run gives back grants not taken, from any
        process.
        """
        slots = self.store.slots
        if not slots.reads_handoffs or holder_kind == "task_run":
            return slots.claim_handoff(wid, names)
        local = self._local()
        taken, leases = local.taken, local.leases
        with local.lock:
            if wid in local.cancelled:
                return None  # the loop finds it cancelled
            found = slots.read_handoff(wid, names)
            if found is not None and found.gone:
                # Its lease was reaped before it looked (it was paused): the row
                # goes now, with a write, so that it can queue again under its id.
                return slots.claim_handoff(wid, names)
            if found is not None and found.grant is not None:
                lease = found.grant.lease_id
                taken[wid] = lease
                if lease is not None:
                    leases[lease] = wid
                if len(taken) > _REMEMBERED:
                    # A process holding this many leases at once: the oldest
                    # are forgotten (their rows go when their leases expire).
                    for old in list(taken)[: _REMEMBERED // 2]:
                        dropped = taken.pop(old)
                        if dropped is not None:
                            leases.pop(dropped, None)
            return found

    def _local(self) -> _Local:
        local = self._local_state
        if local is None or local.pid != os.getpid():
            with _SETUP:  # two threads' first use must not make two locks
                local = self._local_state
                if local is None or local.pid != os.getpid():
                    local = self._local_state = _Local(os.getpid())
        return local

    def _refresh_every(self) -> float:
        return max(0.05, self.settings.waiter_ttl_seconds / 3.0)

    def refresh_waiters(self, waiter_ids: Sequence[str]) -> None:
        """Keep the places of requests still waiting (a server's held requests)."""
        self.store.slots.refresh_waiters(waiter_ids)

    def cancel_slot_wait(self, waiter_id: str) -> None:
        """Take a waiting request out of every queue (and stop its waiting call here)."""
        if not waiter_id:
            return
        local = self._local()
        cancelled = local.cancelled
        with local.lock:
            # Marked under the lock: no look of this process takes its grant after this.
            cancelled[waiter_id] = None
            if len(cancelled) > 4096:
                for old in list(cancelled)[:2048]:
                    cancelled.pop(old, None)
            holds = waiter_id in local.taken
        if not holds:
            # A grant it took is its holder's to release; one it never took goes back.
            self._notify(self.store.slots.cancel_slot_wait(waiter_id))
        # A call of this process still waiting as ``waiter_id`` re-checks at once
        # and finds itself cancelled.
        self.wakeups.wake(waiter_id)

    def release_slots(self, lease_id: str) -> bool:
        """Give a lease's slots back; False when it had expired and been reaped."""
        local = self._local()
        handed_to = local.leases.get(lease_id)
        intact, wake = self.store.slots.release_slots(lease_id, handed_to=handed_to)
        if handed_to is not None:
            # After the release: a cancel meanwhile still found it taken.
            with local.lock:
                local.leases.pop(lease_id, None)
                local.taken.pop(handed_to, None)
        self._notify(wake)
        return intact

    def renew_leases(
        self, lease_ids: Sequence[str], lease_seconds: float | None = None
    ) -> list[str]:
        """Extend leases from now; returns the ids that were lost (reaped)."""
        lease = validate_lease_seconds(
            self.settings.concurrency_lease_seconds if lease_seconds is None else lease_seconds
        )
        return self.store.slots.renew_leases(list(lease_ids), lease)

    def sweep_slots(self, names: Sequence[str] | None = None) -> int:
        """Reap expired leases and waiters now; how many leases were reaped."""
        reaped, wake = self.store.reaper.sweep_slots(names)
        self._notify(wake)
        return reaped
