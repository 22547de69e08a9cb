"""examples/hello.py on a current store imports nothing heavy: its cold start stays small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello.py"
HEAVY = (
    "sqlalchemy",
    "alembic",
    "typer",
    "click",
    "rich",
    "pydantic",
    "fastapi",
    "uvicorn",
    "httpx",
    "psycopg",
    "asyncio",
    "concurrent",
    "multiprocessing",
)


def test_hello_runs_without_heavy_imports_once_the_store_exists() -> None:
    script = f"""
import json, runpy, sys
runpy.run_path({str(HELLO)!r}, run_name="__main__")
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))))
"""
    env = {k: v for k, v in os.environ.items() if k not in {"HEADWAY_API_URL"}}
    first = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == "hello, world"
    # The first run built the schema (Alembic may load); the second finds it current.
    second = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[0] == "hello, world"
    assert json.loads(lines[-1]) == []
