"""Imports of optional extras: a missing one is a one-line error naming its install command.

The default install is the whole product (embedded store, server, dashboard,
HTTP client). PostgreSQL (``headway[postgres]``) and Dask (``headway[dask]``)
are extras; a feature that needs one imports it through :func:`require`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from headway.exceptions import MissingExtra

#: Each optional module: the feature that needs it and the extra that brings it.
EXTRAS: dict[str, tuple[str, str]] = {
    "psycopg": ("PostgreSQL", "postgres"),
    "psycopg_pool": ("PostgreSQL", "postgres"),
    "dask": ("DaskTaskRunner", "dask"),
    "distributed": ("DaskTaskRunner", "dask"),
}


def require(module: str) -> ModuleType:
    """Import optional ``module``, or raise :class:`MissingExtra` naming its extra."""
    feature, extra = EXTRAS[module]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(feature, extra, exc.name or module) from exc
