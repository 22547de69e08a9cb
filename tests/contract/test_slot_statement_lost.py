"""PostgreSQL's one-statement acquire and release when the connection fails under them.

Such a statement is its own transaction: when the connection drops while it
runs, it may or may not have committed. The store then looks (the lease's own
id says which) instead of guessing. Both outcomes are driven here on a real
PostgreSQL: the statement carried out with its answer lost, and the statement
never carried out. Either way the caller gets the truth: one grant, counted
once; a release that happened, or one that happens now.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from headway.core.limits import SlotGrant
from headway.exceptions import OutcomeUnknown
from headway.store.store import Store

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def pg_store(backend: Backend) -> Iterator[Store]:
    if backend.name != "embedded-postgres":
        pytest.skip("the one-statement slot path is PostgreSQL's; checked on the store itself")
    store = Store.open(backend.settings)
    store.limits.create_limit("a", 2)
    try:
        yield store
    finally:
        store.close()


def _lose_answers(store: Store, monkeypatch: pytest.MonkeyPatch, *, carried_out: bool) -> None:
    """The next slot statement fails as a dropped connection would, after running or before."""
    real = store.db.execute_alone
    armed = [True]

    def flaky(query: str, params: dict[str, Any]) -> Any:
        if armed[0] and query.startswith(("WITH ", "SELECT headway_")):
            armed[0] = False
            if carried_out:
                real(query, params)
            raise OutcomeUnknown("lost the connection to the store (simulated)")
        return real(query, params)

    monkeypatch.setattr(store.db, "execute_alone", flaky)


def _active(store: Store) -> tuple[float, int]:
    with store.db.read() as tx:
        row = tx.one(
            "SELECT active_slots, (SELECT COUNT(*) FROM leases WHERE limit_name = 'a')"
            " FROM limits WHERE name = 'a'"
        )
    assert row is not None
    return float(row[0]), int(row[1])


def _acquire(store: Store) -> SlotGrant:
    from headway._process import current_process

    attempt = store.slots.acquire_slots(
        ["a"], 1, mode="concurrency", priority=0, holder_kind="code", holder_id=None,
        process=current_process(), lease_seconds=30.0, waiter_id="", new_waiter=True,
        may_queue=False, wake_address=None,
    )  # fmt: skip
    assert attempt.grant is not None, attempt
    return attempt.grant


@pytest.mark.parametrize("carried_out", [True, False], ids=["answer-lost", "never-ran"])
def test_an_acquire_whose_statement_was_cut_grants_exactly_once(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch, carried_out: bool
) -> None:
    _lose_answers(pg_store, monkeypatch, carried_out=carried_out)
    grant = _acquire(pg_store)
    # One lease, one slot: the grant that was carried out is the one returned,
    # or, if it never ran, the one taken the long way.
    assert _active(pg_store) == (1.0, 1)
    with pg_store.db.read() as tx:
        assert tx.one("SELECT 1 FROM leases WHERE lease_id = :id", {"id": grant.lease_id})
    assert grant.lease_id is not None
    assert pg_store.slots.release_slots(grant.lease_id)[0] is True
    assert _active(pg_store) == (0.0, 0)


@pytest.mark.parametrize("carried_out", [True, False], ids=["answer-lost", "never-ran"])
def test_a_release_whose_statement_was_cut_is_done_once_and_reported_intact(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch, carried_out: bool
) -> None:
    grant = _acquire(pg_store)
    assert grant.lease_id is not None and _active(pg_store) == (1.0, 1)
    _lose_answers(pg_store, monkeypatch, carried_out=carried_out)
    intact, _ = pg_store.slots.release_slots(grant.lease_id)
    # Never "lost": the lease was ours until we gave it back (a false LeaseLostError
    # would tell the holder its slot had been given to someone else).
    assert intact is True
    assert _active(pg_store) == (0.0, 0)


def test_a_release_with_a_waiter_is_one_transaction_with_its_handoff(pg_store: Store) -> None:
    import psycopg

    from headway._process import current_process

    pg_store.limits.update_limit("a", limit=1)
    grant = _acquire(pg_store)
    assert grant.lease_id is not None
    queued = pg_store.slots.acquire_slots(
        ["a"], 1, mode="concurrency", priority=0, holder_kind="code", holder_id=None,
        process=current_process(), lease_seconds=30.0, waiter_id="w", new_waiter=True,
        may_queue=True, wake_address=None,
    )  # fmt: skip
    assert queued.wait is not None
    # Someone waits, so the release and the handoff to the waiter are one
    # transaction: when the handoff fails (here the database refuses its row),
    # nothing was written, and saying so is true (the lease is still held; the
    # release may be sent again).
    with pg_store.db.write() as tx:
        tx.execute(
            "CREATE FUNCTION refuse_handoff() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'no handoff (test)'; END $$"
        )
        tx.execute(
            "CREATE TRIGGER refuse_handoff BEFORE INSERT ON handoffs"
            " FOR EACH ROW EXECUTE FUNCTION refuse_handoff()"
        )
    with pytest.raises(psycopg.errors.RaiseException):
        pg_store.slots.release_slots(grant.lease_id)
    assert _active(pg_store) == (1.0, 1)
    with pg_store.db.write() as tx:
        tx.execute("DROP TRIGGER refuse_handoff ON handoffs")
    intact, wake = pg_store.slots.release_slots(grant.lease_id)
    assert intact is True and [t.waiter_id for t in wake] == ["w"]
    assert _active(pg_store) == (1.0, 1)  # the waiter's lease now
