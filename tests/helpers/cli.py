"""The CLI called in this process (``headway.cli.main``), its output read through capsys.

Much faster than a ``headway`` subprocess; each test still has its own store
(the autouse ``headway_home`` fixture).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from headway.cli import main

Captured = pytest.CaptureFixture[str]


def cli(capsys: Captured, *args: str) -> tuple[int, str, str]:
    """Run ``headway ARGS``: its exit code, stdout and stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: Captured, *args: str) -> str:
    """Run ``headway ARGS``, which must succeed; its stdout."""
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    return out


def refused(capsys: Captured, *args: str) -> str:
    """Run ``headway ARGS``, which must be refused as bad input (exit 2, one line); stderr."""
    code, out, err = cli(capsys, *args)
    assert code == 2, (out, err)
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


def ok_json(capsys: Captured, *args: str) -> Any:
    """Run ``headway ARGS -o json``, which must succeed; the JSON it printed."""
    return json.loads(ok(capsys, *args, "-o", "json"))


__all__ = ["Captured", "cli", "ok", "ok_json", "refused"]
