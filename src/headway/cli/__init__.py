"""The ``headway`` command line: a Typer app, one module per noun.

Errors become exit codes in one place (:func:`main`): a user's mistake prints
one line and exits 2; nothing prints a traceback. Every exit code:

====  ==============================================================================
0     success (``deployment run --wait``: the run COMPLETED)
1     the store or server could not be used; ``--wait``: the run FAILED
2     bad input: a usage error, an unknown name, a refused change (one line, no traceback)
3     ``--wait``: the run was CANCELLED
4     ``--wait``: the run CRASHED
5     ``--wait``: the run had not ended when ``--timeout`` passed
130   interrupted (Ctrl-C)
====  ==============================================================================
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import typer

from headway.cli.app import app
from headway.cli.exit_codes import RUN_EXIT_CODES, RUN_NOT_ENDED_EXIT_CODE, run_exit_code
from headway.exceptions import HeadwayError


@functools.cache
def _command() -> Any:
    # Typer builds the Click command tree from the app on every call (~25 ms of
    # CPU); a process that runs several commands (tests, embedding) builds it
    # once. Typer's own call adds only its pretty tracebacks, which the app turns off.
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the console script)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        # Without standalone mode, Click hands back a ``typer.Exit``'s code as the
        # return value instead of raising it: that code is the exit code.
        returned = _command()(args=args, prog_name="headway", standalone_mode=False)
    except typer.Abort:
        _error("aborted")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # ``headway`` alone (or a noun alone) prints its help: that is not an error.
            print(exc.format_message() if hasattr(exc, "format_message") else "", end="")
            return 0
        # Usage errors: one clear line, exit 2.
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _error(message)
        return 2
    except HeadwayError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    return returned if isinstance(returned, int) and not isinstance(returned, bool) else 0


def _error(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"Error: {first}", file=sys.stderr)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


__all__ = ["RUN_EXIT_CODES", "RUN_NOT_ENDED_EXIT_CODE", "main", "run", "run_exit_code"]
