"""The one Alembic history, for SQLite and PostgreSQL alike.

``HEAD`` is the newest revision; a store whose ``alembic_version`` equals it is
current and is opened without importing Alembic or SQLAlchemy at all. A test
checks that ``HEAD`` is the history's single head and that ``KNOWN`` is
the whole history.
"""

from __future__ import annotations

HEAD = "0012"
#: Every revision of the history, oldest first: a store at any other revision was
#: upgraded by a newer headway (revisions are numbered ``0001``, ``0002``, ...).
KNOWN = tuple(f"{n:04d}" for n in range(1, int(HEAD) + 1))
