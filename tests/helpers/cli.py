"""The CLI run in the test's own process: ``headway.cli.main`` with its output captured.

A ``headway`` subprocess spends about 0.3 s of CPU on its imports before it does
anything, and a suite that ran every CLI check that way spent minutes on them.
Tests of what a command does call it here instead, with the same arguments, the
same environment (``os.environ``, which the test's fixtures set) and the same
exit code and streams a user would see. Tests of how the process itself behaves
(signals, a console script's exit status, what a fresh interpreter imports)
still start one.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass

from headway.cli import main
from headway.client.base import set_default_client


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
