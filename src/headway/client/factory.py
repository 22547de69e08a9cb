"""The process's default client, and the one place the embedded stack is assembled.

``HEADWAY_API_URL`` set: an :class:`~headway.client.http.HttpClient`. Otherwise
the embedded client, which is the :class:`~headway.orchestrator.Orchestrator`
itself over the store under ``HEADWAY_HOME`` (or ``HEADWAY_DATABASE_URL``).
Each side's modules are imported only when that side is built: an HTTP client
never loads the store, and the embedded one never loads httpx.
"""

from __future__ import annotations

import threading

from headway.api.operations import Client
from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.settings import Settings, get_settings

_default: Client | None = None
_default_lock = threading.Lock()


def get_client(settings: Settings | None = None) -> Client:
    """The process's default client: HTTP when ``HEADWAY_API_URL`` is set, else embedded.

    It is made on first use (never on import) and shared by the SDK, the
    concurrency API and the CLI of this process. Pass ``settings`` to build a
    separate client instead.
    """
    global _default
    if settings is not None:
        return _make_client(settings)
    client = _default
    if client is not None:
        return client
    with _default_lock:
        if _default is None:
            _default = _make_client(get_settings())
        return _default


def set_default_client(client: Client | None) -> Client | None:
    """Replace the process's default client (tests, embedding); returns the old one."""
    global _default
    with _default_lock:
        old, _default = _default, client
    return old


def embedded_client(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> Client:
    """The Orchestrator over the store ``settings`` name, opened (and migrated) now."""
    # Imported here, not at the top: an HTTP client process never loads the store.
    from headway.orchestrator import Orchestrator
    from headway.store.store import Store

    client: Client = Orchestrator(Store.open(settings, clock=clock), settings)
    return client


def _make_client(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Client:
    # ``clock`` is the embedded store's (a server keeps its own time).
    if settings.api_url:
        # Imported here: the embedded path never loads httpx.
        from headway.client.http import HttpClient

        client: Client = HttpClient(settings)
        return client
    return embedded_client(settings, clock=clock)
