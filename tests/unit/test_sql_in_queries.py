"""Every SQL statement of the store sits in ``store/queries/`` (or, for a dialect
difference, in ``store/dialects.py``; the migrations keep theirs): the parts that
run them name them. This scans the store's other modules for string literals that
are SQL, or pieces of it, and lists where each is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import headway.store

STORE = Path(headway.store.__file__).parent
#: Where SQL text may be written.
ALLOWED = ("queries/", "migrations/", "dialects.py")
#: A literal that starts with one of these words (in capitals) is SQL or a piece of it.
SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|DROP|ALTER|BEGIN|COMMIT|ROLLBACK|PRAGMA"
    r"|LISTEN|UNLISTEN|NOTIFY|VACUUM|SAVEPOINT|RELEASE|SET|WHERE|AND|OR|FROM|JOIN|LEFT|ORDER BY"
    r"|GROUP BY|LIMIT|OFFSET|VALUES|RETURNING|ON CONFLICT|FOR UPDATE|UNION|HAVING)\b"
)


def sql_literals(path: Path) -> list[str]:
    """The SQL-looking string literals of one module, as ``file:line: text``."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL_START.match(text):
            rel = path.relative_to(STORE).as_posix()
            found.append(f"{rel}:{node.lineno}: {text.strip()[:60]}")
    return found


def test_the_store_writes_sql_only_in_its_queries_modules() -> None:
    outside = []
    for path in sorted(STORE.rglob("*.py")):
        rel = path.relative_to(STORE).as_posix()
        if rel.startswith(ALLOWED[:2]) or rel == ALLOWED[2]:
            continue
        outside += sql_literals(path)
    assert outside == [], "SQL outside store/queries/:\n" + "\n".join(outside)
