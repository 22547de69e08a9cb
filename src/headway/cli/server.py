"""``headway server start``: the HTTP server (FastAPI + uvicorn) over a store."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

import typer

from headway.exceptions import ConfigurationError, ValidationError
from headway.settings import _mask, get_settings

# The client, rich and other heavy modules are imported in the commands that
# use them: every command loads this module (see headway.cli.app).

NAME = "server"

app = typer.Typer(
    help="Run the headway HTTP server that clients reach with HEADWAY_API_URL.",
    no_args_is_help=True,
)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_free(host: str, port: int) -> None:
    """Refuse at once, in one line, an address that cannot be listened on.

    Before anything starts: uvicorn would open the store and start the
    services first, then fail to bind and stop them all again, printing its
    own log lines on the way.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port in TIME_WAIT only is free to take.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {reason} (another server? choose --port)"
            ) from None


@app.command()
def start(
    host: str | None = typer.Option(
        None, "--host", help="Address to bind (default HEADWAY_SERVER_HOST, 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to bind (default HEADWAY_SERVER_PORT, 4200)."
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="Store to serve (default HEADWAY_DATABASE_URL, else SQLite under HEADWAY_HOME).",
    ),
    workers: int = typer.Option(1, "--workers", help="Server processes sharing the port."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback bind without HEADWAY_API_KEY."
    ),
    log_level: str | None = typer.Option(
        None, "--log-level", help="Server log level (default HEADWAY_LOGGING_LEVEL)."
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
    ssl_certfile: str | None = typer.Option(
        None,
        "--ssl-certfile",
        help="Serve HTTPS with this certificate (PEM, with its chain); needs --ssl-keyfile.",
    ),
    ssl_keyfile: str | None = typer.Option(
        None, "--ssl-keyfile", help="The certificate's private key (PEM)."
    ),
) -> None:
    """Start the server; migrations run first, so a new database is ready at once."""
    if database_url is not None:
        if not database_url.strip():
            raise ValidationError("--database-url must not be empty")
        # Worker processes read their settings from the environment.
        os.environ["HEADWAY_DATABASE_URL"] = database_url
    # The server is the store: it never forwards to another server.
    os.environ.pop("HEADWAY_API_URL", None)
    settings = get_settings()
    bind_host = host or settings.server_host
    bind_port = settings.server_port if port is None else port
    if not 0 <= bind_port <= 65535:
        raise ValidationError(f"--port must be between 0 and 65535, got {bind_port}")
    if workers < 1:
        raise ValidationError(f"--workers must be at least 1, got {workers}")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ValidationError("--ssl-certfile and --ssl-keyfile go together: pass both or neither")
    for flag, path in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
        if path is not None and not os.path.isfile(path):
            raise ValidationError(f"{flag}: no such file: {path}")
    if not is_loopback(bind_host) and not settings.accepted_api_keys and not insecure:
        raise ConfigurationError(
            f"refusing to bind {bind_host} without HEADWAY_API_KEY: anyone who can reach it"
            " could change runs and limits (set HEADWAY_API_KEY, or pass --insecure)"
        )
    _check_free(bind_host, bind_port)
    # The app (in each worker process) answers to the address it binds, whatever
    # said it: the option or the setting.
    os.environ["HEADWAY_SERVER_HOST"] = bind_host
    from headway.store.db import Database
    from headway.store.migrate import ensure_schema

    db = Database(
        settings.effective_database_url,
        settings.store_busy_timeout_seconds,
        settings.database_pool_size,
    )
    try:
        ensure_schema(db)
    finally:
        db.close()

    if not settings.api_key and not is_loopback(bind_host) and not settings.server_allowed_hosts:
        typer.echo(
            f"note: without HEADWAY_API_KEY the server answers only to loopback names and"
            f" {bind_host}; list the names clients use in HEADWAY_SERVER_ALLOWED_HOSTS",
            err=True,
        )
    import uvicorn

    level = (log_level or settings.logging_level).lower()
    scheme = "https" if ssl_certfile else "http"
    keys = len(settings.accepted_api_keys)
    typer.echo(
        f"headway server on {scheme}://{bind_host}:{bind_port}"
        f" (store: {_mask(settings.effective_database_url)}, workers: {workers},"
        f" API key: {'required' if keys else 'none'}"
        + (f", {keys} keys accepted" if keys > 1 else "")
        + ")",
        err=True,
    )
    uvicorn.run(
        "headway.server.app:app_from_environment",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers,
        log_level=level,
        access_log=access_log,
        # Longer than the client's idle expiry, so the client always closes first.
        timeout_keep_alive=30,
        server_header=False,
        # Passed through to uvicorn, which serves TLS itself.
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
