"""Helpers shared by CLI modules: output formats and argument checks."""

from __future__ import annotations

import json
from typing import Any

import typer

from headway.core.models import to_jsonable
from headway.exceptions import ValidationError

OUTPUT_FORMATS = ("table", "json")


def check_output_format(output: str) -> None:
    """Reject an unknown ``-o`` value with a clear message."""
    if output not in OUTPUT_FORMATS:
        raise ValidationError(f"unknown output format {output!r}; expected table or json")


def emit_json(value: Any) -> None:
    """Print a JSON document (records made JSON-ready first)."""
    typer.echo(json.dumps(to_jsonable(value), indent=2))
