"""The store's SQL, as named statements: one module per area.

The parts of the store (``runs.py``, ``slots/``, ``deployments.py`` ...) hold the
logic of their transactions and run these statements by name; the text of every
statement sits here, so one module shows all an area asks of the database.
Statements are written once with ``:name`` parameters (``store/db.py`` adapts them
to each driver). A statement whose shape depends on the call (a list of ``n``
values, an optional filter) is a small function here that returns its text.
SQLite/PostgreSQL differences stay in ``store/dialects.py``; the migrations keep
their own DDL.
"""
