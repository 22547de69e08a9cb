"""waiters.request_names: a handoff decides on every name its waiter asked for

A request queues with a row on each limit that held it back. A name that was
not limited when it queued (unknown, or disabled) got no row, so a handoff,
which read the request from its rows, decided on those limits alone: enabled
later and full, that limit was passed over, and the request granted the rest
of its names without it (one slot more than that limit allows). The rows now
carry every name the request asked for, when their own names are fewer, and a
handoff decides on them all (``store/slots/handoff.py`` on SQLite; on
PostgreSQL the functions of 0010 and 0011, made again here from their text
with this change). The admission property test holds both to ``core``'s rule.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_0010 = importlib.import_module("headway.store.migrations.versions.0010_slot_functions")
_0011 = importlib.import_module("headway.store.migrations.versions.0011_slot_acquire_function")


def _changed(text: str, edits: list[tuple[str, str]]) -> str:
    """``text`` with each edit made once (each must be there: the text is 0010's or 0011's)."""
    for old, new in edits:
        if text.count(old) != 1:
            raise RuntimeError(f"migration 0012: expected one {old[:60]!r}")
        text = text.replace(old, new)
    return text


#: The handoff reads the request's names with its row and decides on all of them
#: (those without a row of the request are try-locked as other extra limits are).
HAND_OFF = _changed(
    _0010.HAND_OFF,
    [
        ("CREATE FUNCTION headway_hand_off(", "CREATE OR REPLACE FUNCTION headway_hand_off("),
        (
            "w.holder_id, w.mode, w.lease_seconds, w.created\n          INTO v_w",
            "w.holder_id, w.mode, w.lease_seconds, w.created, w.request_names\n          INTO v_w",
        ),
        (
            "        v_wanted := ARRAY(SELECT jsonb_array_elements_text(v_req->'names'));\n",
            "        v_wanted := ARRAY(SELECT jsonb_array_elements_text(v_req->'names'));\n"
            "        IF v_w.request_names IS NOT NULL THEN\n"
            "            -- Names it asked for with no row of its own (not limited when it\n"
            "            -- queued): decided on too, all or nothing.\n"
            '            v_wanted := ARRAY(SELECT DISTINCT n COLLATE "C" FROM unnest(v_wanted\n'
            "                || ARRAY(SELECT jsonb_array_elements_text(v_w.request_names::jsonb)))"
            " n\n"
            "                ORDER BY 1);\n"
            "        END IF;\n",
        ),
    ],
)

#: A request queued with rows on fewer limits than it named records every name.
ACQUIRE = _changed(
    _0011.ACQUIRE,
    [
        ("CREATE FUNCTION headway_acquire(", "CREATE OR REPLACE FUNCTION headway_acquire("),
        (
            "holder_id, pid, host, proc_start, wake_address, created, expires, node, mode,\n"
            "            lease_seconds)\n",
            "holder_id, pid, host, proc_start, wake_address, created, expires, node, mode,\n"
            "            lease_seconds, request_names)\n",
        ),
        (
            "               p_lease_seconds\n        FROM unnest(v_missing) n;",
            "               p_lease_seconds,\n"
            "               CASE WHEN EXISTS (SELECT 1 FROM unnest(p_names) a\n"
            "                                 WHERE NOT a = ANY(d.limited))\n"
            "                    THEN to_jsonb(p_names)::text END\n"
            "        FROM unnest(v_missing) n;",
        ),
    ],
)


def upgrade() -> None:
    with op.batch_alter_table("waiters") as batch:
        batch.add_column(sa.Column("request_names", sa.Text(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # Sent as is: no parameters, so nothing in the bodies is taken for one.
    bind.exec_driver_sql(_0010.render(HAND_OFF))
    bind.exec_driver_sql(_0011.render(ACQUIRE))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # The functions as 0010 and 0011 made them, before the column goes.
        for made, text in ((_0010, _0010.HAND_OFF), (_0011, _0011.ACQUIRE)):
            bind.exec_driver_sql(
                made.render(text.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
            )
    with op.batch_alter_table("waiters") as batch:
        batch.drop_column("request_names")
