"""The CLI run in the test's own process: ``headway.cli.main`` with its output captured.

A ``headway`` subprocess spends about 0.3 s of CPU on its imports before it does
anything, and a suite that ran every CLI check that way spent minutes on them.
Tests of what a command does call it here instead, with the same arguments, the
same environment (``os.environ``, which the test's fixtures set) and the same
exit code and streams a user would see. Tests of how the process itself behaves
(signals, a console script's exit status, what a fresh interpreter imports)
still start one.

Two ways: :func:`headway` captures the streams itself (the shape of
``subprocess.CompletedProcess``); :func:`cli` and its companions read them
through pytest's ``capsys``.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

import pytest

from headway.cli import main
from headway.client.base import set_default_client

Captured = pytest.CaptureFixture[str]


@dataclass(frozen=True)
class Ran:
    """What one command did: the shape of ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


@contextmanager
def _stdin(text: str) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def headway(*args: str, input: str = "") -> Ran:
    """Run ``headway ARGS`` in this process; its exit code, stdout and stderr.

    The command opens its own client from the environment, as a new process
    would, and closes it after (so a test that changes the environment between
    two commands is seen by the second).
    """
    out, err = io.StringIO(), io.StringIO()
    saved = set_default_client(None)
    try:
        with redirect_stdout(out), redirect_stderr(err), _stdin(input):
            code = main(list(args))
    finally:
        opened = set_default_client(saved)
        if opened is not None and opened is not saved:
            opened.close()
    return Ran(code, out.getvalue(), err.getvalue())


def cli(capsys: Captured, *args: str) -> tuple[int, str, str]:
    """Run ``headway ARGS``: its exit code, stdout and stderr (read through capsys)."""
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


__all__ = ["Captured", "Ran", "cli", "headway", "ok", "ok_json", "refused"]
