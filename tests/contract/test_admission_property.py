"""One admission rule: every grant path of the store agrees with ``core.limits``.

By property (hypothesis, derandomized): random sequences of operations on
three limits (``a`` and ``b`` plain, ``r`` a rate limit draining one slot per
time unit) go to the real store through the public Client, and to a model
built only from :mod:`headway.core.limits` (tests/helpers/admission.py). The
operations: acquires of one or several names, weighted (occupy 1 to 3), at two
priorities, as single tries or as named waiters that queue; rate tokens; the
waiters coming back (taking a grant handed to them, or keeping their place),
cancelling; releases and renewals; the clock moved past lease and waiter
expiries; sweeps; a limit resized (to 0 as well: a kill switch that refuses
every request at once), disabled or enabled, reset. They reach
every grant path: SQLite's one-statement fast grant and PostgreSQL's, the full
decision, the handoff a release (a cancel, a limit change, a reap) makes in its
own transaction, and the lazy reaping an attempt does before it waits.

After each step the store and the model must give the same answer (granted
what, waiting why, a lease intact or lost, how many reaped) and show the same
limits: who holds how many slots, who waits in what order, the occupancy.
Whatever the model says, the store's own view must also hold three promises:
no grant beyond a limit, a plain limit's count is its leases' slots, and
nobody is granted while someone ahead of it on the same limit still waits
(FIFO within priority, so no large request is starved by later small ones).

Runs on every backend. The server's periodic sweep is switched off for the
test, so that what expired is reaped only where the test (or a request) reaps
it, exactly as embedded. After the clock moves, the limits are read without
the sweep ``inspect_limit`` makes, so the next attempt meets the expired rows
itself. Examples are bounded and seeded per backend (repeatable; each backend
tries its own sequences); ``HEADWAY_PROPERTY_EXAMPLES`` scales their number.
"""

from __future__ import annotations

import os
import re
import uuid
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from headway.client.base import Client
from headway.core.limits import NOT_QUEUED, SlotGrant, SlotWait, is_ahead
from headway.exceptions import LimitClosed, ValidationError
from helpers.admission import UNIT, LimitView, Outcome, SlotModel

pytestmark = pytest.mark.slow  # started first: see tests/conftest.py

if TYPE_CHECKING:
    from conftest import Backend

#: Examples on embedded SQLite; a sixth of it elsewhere, where round trips make each step dearer.
EXAMPLES = int(os.environ.get("HEADWAY_PROPERTY_EXAMPLES", "50"))
#: A waiter row lives this many units unless its request comes back.
TTL_UNITS = 2.5
#: Leases last a unit and a half, or three and a half (expiries fall between whole units).
LEASES = (1.5, 3.5)
NAME_SETS = (("a",), ("b",), ("r",), ("a", "b"), ("a", "r"), ("b", "r"), ("a", "b", "r"))
#: Parts of the rule the store keeps: a handoff hands on the queues its grantee
#: leaves, and decides on every name of a request (its rows record them since
#: migration 0012); ``SlotModel`` can still be run without either.
CASCADE = True
WHOLE_REQUEST = True
#: What the store says of a named waiter that is no longer queued.
GONE_PREFIX = "the request left the queue"


# -- operations (their repr is the falsifying example hypothesis prints) -------------
@dataclass(frozen=True)
class Acquire:
    """``acquire_slots(timeout=0)``: a try (``queue=False``) or a named waiter."""

    names: tuple[str, ...]
    slots: int
    priority: int = 0
    queue: bool = False
    rate: bool = False
    lease: float = 1.5


@dataclass(frozen=True)
class Retry:
    """A queued request comes back (``pick`` chooses among the pending ones)."""

    pick: int


@dataclass(frozen=True)
class Cancel:
    """``cancel_slot_wait`` of a pending request."""

    pick: int


@dataclass(frozen=True)
class Release:
    """``release_slots`` of a lease the test holds."""

    pick: int


@dataclass(frozen=True)
class Renew:
    """``renew_leases`` of a lease the test holds."""

    pick: int
    lease: float = 1.5


@dataclass(frozen=True)
class Advance:
    """The store's clock moves ``units`` forward (nothing is reaped by it)."""

    units: int


@dataclass(frozen=True)
class Sweep:
    """``sweep_slots()``: every limit."""


@dataclass(frozen=True)
class Resize:
    """``update_limit(limit=...)``."""

    name: str
    limit: int


@dataclass(frozen=True)
class Toggle:
    """``update_limit(active=...)``: disable an active limit, enable a disabled one."""

    name: str


@dataclass(frozen=True)
class Reset:
    """``reset_limit``."""

    name: str


Op = Acquire | Retry | Cancel | Release | Renew | Advance | Sweep | Resize | Toggle | Reset

_acquires = st.builds(
    Acquire,
    names=st.sampled_from(NAME_SETS),
    slots=st.integers(1, 3),
    priority=st.sampled_from([0, 0, 1]),
    queue=st.sampled_from([True, True, False]),
    lease=st.sampled_from(LEASES),
)
_tokens = st.builds(
    Acquire, names=st.just(("r",)), slots=st.integers(1, 2), queue=st.booleans(), rate=st.just(True)
)
_picks = st.integers(0, 5)
_limit_names = st.sampled_from(["a", "b", "r"])
#: Each kind of operation as often as it appears here (one_of would weigh kinds equally).
_WEIGHTED: list[st.SearchStrategy[Op]] = [
    *[_acquires] * 8,
    *[_tokens] * 2,
    *[st.builds(Retry, _picks)] * 4,
    *[st.builds(Cancel, _picks)] * 2,
    *[st.builds(Release, _picks)] * 5,
    *[st.builds(Renew, _picks, st.sampled_from(LEASES))] * 2,
    *[st.builds(Advance, st.integers(1, 3))] * 3,
    st.just(Sweep()),
    st.builds(Resize, _limit_names, st.integers(0, 4)),
    st.builds(Toggle, _limit_names),
    st.builds(Reset, _limit_names),
]
OPS: st.SearchStrategy[Op] = st.sampled_from(_WEIGHTED).flatmap(lambda ops: ops)
SIZES = st.fixed_dictionaries(
    {"a": st.integers(1, 3), "b": st.integers(0, 4), "r": st.integers(2, 4)}
)


#: What an attempt refused by a limit of 0 (LimitClosed) is recorded as.
CLOSED = "closed"


# -- one run: the store and the model side by side -------------------------------------
_FLOAT = re.compile(r"\d+\.\d+")


def _reasons(reasons: tuple[str, ...]) -> tuple[str, ...]:
    # A rate limit's count on the store is a hair below the model's whole number
    # (the store's clock also runs between steps): compare counts as whole slots.
    return tuple(_FLOAT.sub(lambda m: str(round(float(m.group()))), r) for r in reasons)


class Run:
    """One example: the limits made, each operation applied to both, then compared."""

    def __init__(self, client: Client, sizes: dict[str, int]) -> None:
        self.client = client
        self.model = SlotModel(TTL_UNITS, cascade=CASCADE, whole_request=WHOLE_REQUEST)
        self.prefix = f"adm-{uuid.uuid4().hex[:8]}-"
        self.names = [self.prefix + n for n in sorted(sizes)]
        for base, size in sorted(sizes.items()):
            decay = 1.0 if base == "r" else 0.0
            client.create_limit(self.prefix + base, size, slot_decay_per_second=decay / UNIT)
            self.model.create_limit(self.prefix + base, size, decay)
        self.labels = 0
        #: Named waiters the test may bring back or cancel: waiter id -> (label, request).
        self.pending: dict[str, tuple[str, Acquire]] = {}
        #: Leases the test holds: model key -> store lease id.
        self.held: dict[str, str] = {}
        self.priority: dict[str, int] = {}
        #: The store's queue position (seq) last seen for each label.
        self.seqs: dict[str, int] = {}
        self.seen: dict[str, LimitView] = {}
        self.used: dict[str, float] = {}
        self.log: list[str] = []

    def close(self) -> None:
        """Delete the example's limits (their holders and waiters go with them)."""
        for name in self.names:
            self.client.delete_limit(name, force=True)

    # -- steps --------------------------------------------------------------------
    def step(self, op: Op) -> None:
        """Apply ``op`` to both, compare the answers, then compare the limits."""
        self.log.append(repr(op))
        if isinstance(op, Acquire):
            self._acquire(op)
        elif isinstance(op, Retry | Cancel):
            if not self.pending:
                return
            waiter_id = sorted(self.pending)[op.pick % len(self.pending)]
            if isinstance(op, Retry):
                self._retry(waiter_id)
            else:
                del self.pending[waiter_id]
                self.client.cancel_slot_wait(waiter_id)
                self.model.cancel(waiter_id)
        elif isinstance(op, Release | Renew):
            if not self.held:
                return
            key = sorted(self.held)[op.pick % len(self.held)]
            if isinstance(op, Release):
                lease_id = self.held.pop(key)
                self._same("release", self.client.release_slots(lease_id), self.model.release(key))
            else:
                lost = self.client.renew_leases([self.held[key]], op.lease * UNIT)
                self._same("renew lost", bool(lost), self.model.renew(key, op.lease))
        elif isinstance(op, Advance):
            self.model.advance(op.units)
            self.client_clock_advance(op.units * UNIT)
            self._look()
            return
        elif isinstance(op, Sweep):
            self._same("reaped", self.client.sweep_slots(), self.model.sweep())
        elif isinstance(op, Resize | Toggle):
            name = self.prefix + op.name
            if isinstance(op, Resize):
                self.client.update_limit(name, limit=op.limit)
                self.model.update(name, limit=op.limit)
            else:
                active = not self.model.limits[name].active
                self.client.update_limit(name, active=active)
                self.model.update(name, active=active)
        else:
            self.client.reset_limit(self.prefix + op.name)
            self.model.reset(self.prefix + op.name)
        self._inspect()

    def client_clock_advance(self, seconds: float) -> None:
        """Move the store's clock (set by the test from its backend)."""
        raise NotImplementedError

    def _options(self, label: str, request: Acquire) -> dict[str, Any]:
        return {
            "priority": request.priority,
            "mode": "rate" if request.rate else "concurrency",
            "holder_id": label,
            "lease_seconds": request.lease * UNIT,
            "timeout": 0,
        }

    def _acquire(self, request: Acquire) -> None:
        self.labels += 1
        label = f"r{self.labels}"
        self.priority[label] = request.priority
        names = tuple(self.prefix + n for n in request.names)
        waiter_id = uuid.uuid4().hex if request.queue else None
        try:
            got: SlotGrant | SlotWait | str | None = self.client.acquire_slots(
                names, request.slots, waiter_id=waiter_id, **self._options(label, request)
            )
        except ValidationError:
            got = None
        except LimitClosed:
            got = CLOSED
        expected = self.model.acquire(
            waiter_id,
            label,
            names,
            request.slots,
            priority=request.priority,
            mode="rate" if request.rate else "concurrency",
            lease_units=request.lease,
        )
        self._answer(got, expected)
        if waiter_id is not None and expected.kind == "wait":
            self.pending[waiter_id] = (label, request)

    def _retry(self, waiter_id: str) -> None:
        label, request = self.pending[waiter_id]
        names = tuple(self.prefix + n for n in request.names)
        try:
            got: SlotGrant | SlotWait | str | None = self.client.acquire_slots(
                names, request.slots, waiter_id=waiter_id, **self._options(label, request)
            )
        except ValidationError:
            got = None
        except LimitClosed:
            got = CLOSED
        expected = self.model.acquire(
            waiter_id,
            label,
            names,
            request.slots,
            priority=request.priority,
            mode="rate" if request.rate else "concurrency",
            lease_units=request.lease,
        )
        self._answer(got, expected)
        if expected.kind in ("grant", "gone"):
            del self.pending[waiter_id]

    def _answer(self, got: SlotGrant | SlotWait | str | None, expected: Outcome) -> None:
        if got is None:
            actual: tuple[Any, ...] = ("error",)
        elif isinstance(got, str):
            actual = (got,)
        elif isinstance(got, SlotGrant):
            actual = ("grant", tuple(sorted(got.names)), got.slots, got.lease_id is not None)
        elif got.reasons and got.reasons[0].startswith(GONE_PREFIX):
            actual = ("gone",)
        else:
            after = None if got.retry_after is None else round(got.retry_after / UNIT, 1)
            actual = ("wait", _reasons(got.reasons), after)
        if expected.kind == "grant":
            want: tuple[Any, ...] = (
                "grant",
                tuple(sorted(expected.names)),
                expected.slots,
                expected.lease is not None,
            )
        elif expected.kind == "wait":
            after = None if expected.retry_after is None else round(expected.retry_after, 1)
            want = ("wait", _reasons(expected.reasons), after)
        else:
            want = (expected.kind,)
        self._same("answer", actual, want)
        if isinstance(got, SlotGrant) and got.lease_id is not None and expected.lease is not None:
            self.held[expected.lease] = got.lease_id

    # -- comparing ----------------------------------------------------------------
    def _same(self, what: str, actual: object, expected: object) -> None:
        assert actual == expected, (
            f"{what}: the store says {actual!r}, core's rule says {expected!r}\n"
            "after: " + ", ".join(self.log)
        )

    def _look(self) -> None:
        # After the clock moved: read without sweeping, so the next attempt meets
        # the expired rows itself (lazy reaping) and the model must agree on it.
        for name in self.names:
            limit = self.client.read_limit(name)
            used = limit.exact_active_slots or 0.0
            self._same(f"{name} occupancy", round(used), round(self.model.limits[name].used))
            self._same(f"{name} waiters", limit.waiters, self.model.live_waiters(name))
            self.used[name] = used

    def _inspect(self) -> None:
        for name in self.names:
            detail = self.client.inspect_limit(name)
            view = LimitView(
                detail.limit.limit,
                detail.limit.active,
                detail.limit.exact_active_slots or 0.0,
                tuple(sorted((str(h.holder.id), h.slots[name]) for h in detail.holders)),
                tuple((str(w.holder.id), w.slots, w.priority) for w in detail.waiters),
            )
            expected = self.model.inspect(name)
            self._same(f"{name} holders", view.holders, expected.holders)
            self._same(f"{name} waiters", view.waiters, expected.waiters)
            self._same(
                f"{name} limit", (view.limit, view.active), (expected.limit, expected.active)
            )
            self._same(f"{name} occupancy", round(view.used), round(expected.used))
            self._promises(name, view, [(str(w.holder.id), w.id) for w in detail.waiters])

    def _promises(self, name: str, view: LimitView, queue: list[tuple[str, int]]) -> None:
        """What the store's own view must show, whatever the model says."""
        before = self.seen.get(name)
        held_before = list(before.holders) if before else []
        granted = []
        for holder in view.holders:
            if holder in held_before:
                held_before.remove(holder)
            else:
                granted.append(holder[0])
        taken = view.used > self.used.get(name, 0.0) + 0.5
        if granted or taken:
            assert view.used <= view.limit + 1e-6, f"{name} over its limit: {view}; {self.log}"
        if self.model.limits[name].decay == 0:
            held = sum(slots for _, slots in view.holders)
            assert abs(view.used - held) < 1e-6, f"{name} counts {view.used}, leases {held}"
        for label in granted:
            seq = self.seqs.get(label, NOT_QUEUED)
            for waiter, (waiter_label, waiter_seq) in zip(view.waiters, queue, strict=True):
                assert not is_ahead(waiter[2], waiter_seq, self.priority[label], seq), (
                    f"{label} was granted {name} while {waiter_label}, ahead of it, waits;"
                    f" after {self.log}"
                )
        self.seqs.update(queue)
        self.seen[name] = view
        self.used[name] = view.used


# -- the test -------------------------------------------------------------------------
def test_every_grant_path_follows_the_core_rule(
    backend_name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWAY_WAITER_TTL_SECONDS", str(TTL_UNITS * UNIT))
    backend: Backend = request.getfixturevalue("backend")
    client: Client = request.getfixturevalue("client")
    if backend.server is not None:
        # Reaping happens where the test (or a request) does it, as embedded.
        async def no_sweep() -> None:
            return None

        monkeypatch.setattr(backend.server.app.state.services, "sweep_once", no_sweep)

    class BackendRun(Run):
        def client_clock_advance(self, seconds: float) -> None:
            backend.clock.advance(seconds)

    # Seeded by the backend: repeatable, and each backend tries other sequences.
    @seed(zlib.crc32(backend.name.encode()))
    @given(sizes=SIZES, ops=st.lists(OPS, min_size=10, max_size=40))
    @settings(
        max_examples=EXAMPLES if backend.name == "embedded-sqlite" else max(1, EXAMPLES // 6),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(sizes: dict[str, int], ops: list[Op]) -> None:
        run = BackendRun(client, sizes)
        try:
            for op in ops:
                run.step(op)
        finally:
            run.close()

    check()
