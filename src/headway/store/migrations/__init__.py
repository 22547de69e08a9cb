"""The one Alembic history, for SQLite and PostgreSQL alike.

``HEAD`` is the newest revision; a store whose ``alembic_version`` equals it is
current and is opened without importing Alembic or SQLAlchemy at all. A test
checks that ``HEAD`` is the history's single head.
"""

from __future__ import annotations

HEAD = "0007"
