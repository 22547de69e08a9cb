"""MkDocs hook: the table of settings is generated from ``headway.settings`` on every build.

A page holding the marker gets one row per ``HEADWAY_*`` setting: its
variable, its default and its description, read from the fields of
:class:`headway.settings.Settings`, so a new setting appears by itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

MARKER = "<!-- settings-reference -->"


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        if isinstance(value, Path):
            # Shown as the reader's home, not the home of the machine that built the docs.
            value = (
                "~/" + str(value.relative_to(Path.home()))
                if value.is_relative_to(Path.home())
                else value
            )
        else:
            return "depends on the machine (see its description)"
    else:
        return "required"
    return "unset" if value is None else f"`{value}`"


def settings_table() -> str:
    """One Markdown row per setting: variable, default, description."""
    from headway.settings import Settings

    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for field in dataclasses.fields(Settings):
        doc = str(field.metadata["doc"]).replace("|", "\\|")
        rows.append(f"| `{field.metadata['env']}` | {_default(field)} | {doc} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the generated table where the marker is."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_table())
