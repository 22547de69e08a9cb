"""MkDocs hook: the CLI reference page is generated from the Typer app on every build.

``docs/reference/cli.md`` holds a marker; this hook replaces it with
:func:`headway.cli.reference.cli_reference_markdown`, so the page always lists
the commands and options the installed ``headway`` has.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the generated reference where the marker is."""
    if MARKER not in markdown:
        return markdown
    from headway.cli.reference import cli_reference_markdown

    return markdown.replace(MARKER, cli_reference_markdown())
