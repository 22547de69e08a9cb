"""The Client: the one contract every caller (SDK, concurrency API, CLI, worker) uses.

It is declared in :mod:`headway.api.operations` (one declaration per
operation, shared with the server); the default client of a process comes from
:mod:`headway.client.factory`. Both are named here, where callers import them.
"""

from __future__ import annotations

from headway.api.operations import Client
from headway.client.factory import _make_client, embedded_client, get_client, set_default_client

__all__ = ["Client", "_make_client", "embedded_client", "get_client", "set_default_client"]
