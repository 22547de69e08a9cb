"""The generated CLI reference lists every command and option of the Typer app.

The documentation's CLI page is :func:`cli_reference_markdown`'s output; these
checks walk the app's own registrations (not the generator's walk) so a
command or option the generator missed fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from headway.cli.app import app
from headway.cli.reference import cli_reference_markdown


def _command_name(info: object) -> str:
    name = getattr(info, "name", None)
    if name:
        return str(name)
    callback = getattr(info, "callback", None)
    return str(getattr(callback, "__name__", "")).replace("_", "-")


def _option_names(callback: Callable[..., Any]) -> list[str]:
    names: list[str] = []
    for parameter in inspect.signature(callback).parameters.values():
        default = parameter.default
        declared = getattr(default, "param_decls", None) or ()
        for declaration in declared:  # "--enable/--disable" declares two options
            names += [d for d in declaration.split("/") if d.startswith("--")]
    return names


def test_every_command_and_option_is_in_the_reference() -> None:
    text = cli_reference_markdown()
    expected: list[tuple[str, Callable[..., Any] | None]] = [
        (f"headway {_command_name(info)}", info.callback) for info in app.registered_commands
    ]
    seen_groups: set[int] = set()
    for group in app.registered_groups:
        sub = group.typer_instance
        assert sub is not None
        if group.hidden:
            # Prefect's plural spellings (work-pools, ...): accepted, left out of help.
            continue
        if id(sub) in seen_groups:
            # An alias (global-concurrency-limit for gcl): named once, not repeated.
            assert f"`{group.name}` | another name for" in text
            continue
        seen_groups.add(id(sub))
        for info in sub.registered_commands:
            expected.append((f"headway {group.name} {_command_name(info)}", info.callback))
    assert len(expected) > 40
    for heading, callback in expected:
        assert callback is not None
        assert f"# {heading}\n" in text, f"{heading} is missing from the CLI reference"
        section = text.split(f"# {heading}\n", 1)[1].split("\n#", 1)[0]
        for option in _option_names(callback):
            assert f"`{option}`" in section, f"{heading} {option} is missing"


def test_reference_shows_required_and_default_values() -> None:
    text = cli_reference_markdown()
    create = text.split("# headway gcl create\n", 1)[1].split("\n#", 1)[0]
    assert "| `NAME` | text |" in create
    assert "`--limit`, `-l` | integer |" in create
    assert "(required)" in create
    assert "default `0.0`" in create  # --slot-decay-per-second
