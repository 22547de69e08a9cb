"""The SQL of the store's machinery rather than of any area's rows.

Ending transactions (``store/db.py``; how one begins is the dialect's), the
embedded store's WAL checkpoint (``store/checkpoint.py``), the schema's revision
and the lock migrations run under (``store/migrate.py``), and the wake-up
channels of PostgreSQL (``store/wakeups_pg.py``). Some run on a raw DB-API
connection, not through a ``Tx``: those take the driver's own parameter style.
"""

from __future__ import annotations

# -- Transactions --------------------------------------------------------------

COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

# -- The WAL checkpoint (SQLite) -----------------------------------------------

# Copies the WAL into the database as far as no reader needs it, holding no writer back.
WAL_CHECKPOINT_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"

# -- Migrations ----------------------------------------------------------------

# The revision Alembic recorded (the table is missing in a new store).
SELECT_SCHEMA_REVISION = "SELECT version_num FROM alembic_version"
# PostgreSQL's session advisory lock, on a raw connection (psycopg's ``%s``): the key.
TAKE_MIGRATION_LOCK = "SELECT pg_advisory_lock(%s)"
RELEASE_MIGRATION_LOCK = "SELECT pg_advisory_unlock(%s)"

# -- Wake-up channels (PostgreSQL) ---------------------------------------------


def listen_on(channel: str) -> str:
    """Start listening on ``channel`` (a name of headway's making, quoted as given)."""
    return f'LISTEN "{channel}"'


# A notification sent on its own, after a commit (in a transaction, the dialect's
# ``notify_sql`` queues one instead).
SEND_NOTIFICATION = "SELECT pg_notify(:channel, :payload)"
# An empty notification: it only ends the wait of the listener on :channel.
NUDGE_LISTENER = "SELECT pg_notify(:channel, '')"
