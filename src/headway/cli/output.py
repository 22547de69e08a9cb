"""Helpers shared by CLI modules: output formats and argument checks."""

from __future__ import annotations

from headway.exceptions import ValidationError

OUTPUT_FORMATS = ("table", "json")


def check_output_format(output: str) -> None:
    """Reject an unknown ``-o`` value with a clear message."""
    if output not in OUTPUT_FORMATS:
        raise ValidationError(f"unknown output format {output!r}; expected table or json")
