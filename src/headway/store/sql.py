"""Helpers every part of the store uses to build its statements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def in_list(prefix: str, values: Sequence[Any], params: dict[str, Any]) -> str:
    """The ``:<prefix>0, :<prefix>1, ...`` of an ``IN (...)`` list; ``params`` gets the values."""
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
    return ", ".join(f":{prefix}{i}" for i in range(len(values)))


__all__ = ["in_list"]
