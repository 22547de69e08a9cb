"""The FastAPI application: routes -> Orchestrator, errors -> HTTP in one place.

``create_app(settings)`` builds it; the store is opened (and migrated) when the
app starts, and the background services run for as long as it lives. The app
holds no state of its own beyond the store's connections: several server
processes on one PostgreSQL serve the same runs and limits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.responses import JSONResponse

from headway._version import headway_version
from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.orchestrator import Orchestrator
from headway.server import metrics
from headway.server.api_routes import api_routes
from headway.server.crosssite import CrossSiteGuard
from headway.server.errors import install_error_handlers
from headway.server.fastpath import SlotFastPath
from headway.server.middleware import ApiKeyMiddleware, BodyLimitMiddleware, redact_access_log
from headway.server.services import BackgroundServices
from headway.server.store_calls import StoreCalls, threads_for
from headway.server.ui import ui_router
from headway.server.waiting import HeldRequests
from headway.settings import Settings, get_settings
from headway.store.store import Store

API_PREFIX = "/api/v1"
#: Largest request body, and largest on the batch routes (and only on those).
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH_BODY_BYTES = 64 * 1024 * 1024
BATCH_ROUTES = ("/task_runs/batch", "/logs/batch")
#: Threads running store calls in a server on PostgreSQL (each holds a connection).
PG_THREADS = 16

logger = logging.getLogger("headway.server")


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> FastAPI:
    """The server application for ``settings`` (default: from the environment).

    Pass ``store`` to serve an already open store (it is then not closed on exit);
    ``clock`` is the time the store it opens measures expiries on.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        opened = store
        if opened is None:
            # Opening migrates the schema when needed: a new database is ready at start.
            opened = await anyio.to_thread.run_sync(
                functools.partial(Store.open, settings, clock=clock)
            )
        app.state.store = opened
        if opened.db.dialect.name == "postgresql":
            # Request threads borrow the store's pooled connections per call (at
            # most HEADWAY_DATABASE_POOL_SIZE in all); more threads would only wait.
            anyio.to_thread.current_default_thread_limiter().total_tokens = PG_THREADS
        orchestrator = Orchestrator(opened, settings)
        # One wake-up source per server process; held requests park on it.
        wakeups = opened.open_wakeups()
        orchestrator.set_wakeups(wakeups)
        app.state.orchestrator = orchestrator
        # Slot calls run on threads of their own (see store_calls).
        calls = StoreCalls(threads_for(opened.db.dialect.name))
        app.state.held = HeldRequests(
            wakeups,
            refresh_seconds=settings.waiter_ttl_seconds / 3,
            run=calls,
            refresh=orchestrator.refresh_waiters,
        )
        services = BackgroundServices(orchestrator, settings)
        app.state.services = services
        await services.start()
        try:
            yield
        finally:
            # Every thread that may use the store stops before the store closes.
            app.state.held.close()
            idle = await services.stop()
            wakeups.close()
            idle = await anyio.to_thread.run_sync(calls.close) and idle
            if own_store and idle:
                await anyio.to_thread.run_sync(opened.close)

    app = FastAPI(
        title="headway",
        version=headway_version(),
        summary="Python workflows with exact, prompt, crash-safe concurrency limits.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
        # No OpenTelemetry spans, metrics or logs per request: on the slot hot path
        # they cost more than the work, and headway reports its own figures.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    redact_access_log()

    @app.get("/health", tags=["health"], response_model=None)
    async def health() -> JSONResponse:
        """Liveness: always open, even when an API key is required."""
        return JSONResponse({"status": "ok", "version": headway_version()})

    # Every route of the API, from the operations' declarations.
    app.router.routes.extend(api_routes(API_PREFIX))
    app.include_router(metrics.router)
    # The dashboard: its page and assets are open, its data calls need the key.
    app.include_router(ui_router())

    # Innermost first. The slot hot path is answered before FastAPI's routing;
    # the body limit and then (outermost) the API key guard it like every route.
    if settings.server_fastpath:
        app.add_middleware(SlotFastPath, prefix=API_PREFIX)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=MAX_BODY_BYTES,
        route_limits={("POST", API_PREFIX + path): MAX_BATCH_BODY_BYTES for path in BATCH_ROUTES},
    )
    if settings.accepted_api_keys:
        app.add_middleware(ApiKeyMiddleware, api_keys=settings.accepted_api_keys)
    else:
        # Without a key, web pages and rebound DNS names are the threat: outermost,
        # so a refused request's body is never read.
        app.add_middleware(
            CrossSiteGuard,
            allowed_hosts=settings.server_allowed_hosts,
            bind_host=settings.server_host,
        )
    return app


def app_from_environment() -> Any:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app)."""
    return create_app(get_settings())
