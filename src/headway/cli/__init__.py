"""The ``headway`` command line: a Typer app, one module per noun.

Errors become exit codes in one place (:func:`main`): a user's mistake prints
one line and exits 2; nothing prints a traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the console script)."""
    import typer

    from headway.cli.app import app
    from headway.exceptions import HeadwayError

    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="headway", standalone_mode=False)
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
    return 0


def _error(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"Error: {first}", file=sys.stderr)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
