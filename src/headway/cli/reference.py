"""The CLI reference in Markdown, generated from the Typer app itself.

The documentation site's "CLI reference" page is this function's output (a
MkDocs hook, ``docs/hooks/cli_reference.py``, calls it on every build), so the
page cannot drift from the commands: a new option or command appears by
itself, and a removed one disappears.

Run ``python -m headway.cli.reference`` to print it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import typer
import typer.main
from typer.core import TyperGroup, TyperOption

from headway.cli.app import app

# Typer builds its command tree on a Click it carries inside; the nodes are
# walked through the methods Click's commands have always had.
Command = Any


def _root() -> TyperGroup:
    command = typer.main.get_command(app)
    if not isinstance(command, TyperGroup):
        raise TypeError(f"the headway app is not a group of commands: {command!r}")
    return command


def _walk(
    command: Command, path: tuple[str, ...], parent: typer.Context | None
) -> Iterator[tuple[tuple[str, ...], Command, typer.Context]]:
    ctx = typer.Context(command, info_name=path[-1], parent=parent)
    yield path, command, ctx
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(sub, (*path, name), ctx)


def _aliases() -> dict[str, str]:
    """Nouns registered twice (``gcl`` and ``global-concurrency-limit``): alias -> first name."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for group in app.registered_groups:
        if group.name is None:
            continue
        key = id(group.typer_instance)
        if key in first:
            aliases[group.name] = first[key]
        else:
            first[key] = group.name
    return aliases


def _first_paragraph(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ")


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _type_name(param: Any) -> str:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if getattr(param, "multiple", False) and get_args(annotation):
        annotation = get_args(annotation)[0]  # list[str] of a repeatable option: each is a str
    name = getattr(annotation, "__name__", None) or str(annotation or "")
    return {"str": "text", "int": "integer", "float": "number", "bool": "flag"}.get(name, name)


def _shown_default(default: object) -> bool:
    """Whether a default says something (0 does; None, False and empty values do not)."""
    if default is None or default is False or callable(default):
        return False
    return not (isinstance(default, str | list | tuple) and not default)


def _param_row(param: Any) -> str:
    if isinstance(param, TyperOption):
        names = ", ".join(f"`{n}`" for n in (*param.opts, *param.secondary_opts))
        kind = "flag" if param.is_flag else _type_name(param)
    else:
        names = f"`{str(param.name or '').upper()}`" + ("" if param.required else " (optional)")
        kind = _type_name(param)
    help_text = str(getattr(param, "help", None) or "")
    details: list[str] = []
    if param.required:
        details.append("required")
    if param.multiple:
        details.append("repeatable")
    default = param.default
    if _shown_default(default):
        details.append(f"default `{default}`")
    cell = _escape(help_text.strip().replace("\n", " "))
    if details:
        cell = f"{cell} ({'; '.join(details)})" if cell else f"({'; '.join(details)})"
    return f"| {names} | {kind} | {cell} |"


def _command_section(path: tuple[str, ...], command: Command, ctx: typer.Context) -> str:
    level = len(path) + 1
    lines = [f"{'#' * level} {' '.join(path)}", ""]
    help_text = (command.help or "").strip()
    if help_text:
        lines += [_escape(help_text), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```text", f"{' '.join(path)} {usage}".rstrip(), "```", ""]
    params = [
        p
        for p in command.get_params(ctx)
        if not getattr(p, "hidden", False) and "--help" not in p.opts
    ]
    if params:
        lines += ["| name | type | what it does |", "|---|---|---|"]
        lines += [_param_row(p) for p in params]
        lines.append("")
    if isinstance(command, TyperGroup):
        aliases = _aliases() if len(path) == 1 else {}
        rows = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            summary = (
                f"another name for `{aliases[name]}`"
                if name in aliases
                else _escape(_first_paragraph(sub.help))
            )
            rows.append(f"| `{name}` | {summary} |")
        if rows:
            lines += ["| command | what it does |", "|---|---|", *rows, ""]
    return "\n".join(lines)


def cli_reference_markdown() -> str:
    """Every ``headway`` command and option, as Markdown (one heading per command)."""
    root = _root()
    aliases = _aliases()
    sections = []
    for path, command, ctx in _walk(root, ("headway",), None):
        if len(path) > 1 and path[1] in aliases:
            continue  # an alias group is listed once, under its first name
        sections.append(_command_section(path, command, ctx))
    return "\n".join(sections)


if __name__ == "__main__":
    print(cli_reference_markdown())
