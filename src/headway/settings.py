"""Every ``HEADWAY_*`` setting: typed, with its default and where its value came from.

Settings are read from the environment once per :func:`get_settings` call; nothing
is read at import time. ``headway config`` prints :func:`describe` of the effective
settings, so every field here is visible to users (secrets masked).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from headway.exceptions import ConfigurationError

#: The HttpClient's transports: headway's own kept-alive one on the standard
#: library's http.client (the default), or httpx's own (httpcore and h11).
CLIENT_TRANSPORTS = ("stdlib", "httpx")


def _default_max_workers() -> int:
    # Python's own ThreadPoolExecutor default (3.8+): min(32, cpu_count + 4).
    return min(32, (os.cpu_count() or 1) + 4)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _parse_positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


#: HEADWAY_DATABASE_POOL_SIZE's bounds: one connection to borrow and one to
#: listen for wake-ups at least; at most what no PostgreSQL is configured for
#: (its max_connections is 100 by default), so a slip of the keyboard is caught.
POOL_SIZE_MIN = 2
POOL_SIZE_MAX = 10_000
#: Connections a process holds to PostgreSQL at most, unless told otherwise.
DEFAULT_POOL_SIZE = 10


def _parse_pool_size(raw: str) -> int:
    # A value quoted in the error is cut short: the message stays one readable line.
    shown = repr(raw if len(raw) <= 40 else raw[:40] + "...")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number of connections, got {shown}") from None
    if not POOL_SIZE_MIN <= value <= POOL_SIZE_MAX:
        raise ValueError(
            f"must be between {POOL_SIZE_MIN} (one connection to borrow, one for wake-ups)"
            f" and {POOL_SIZE_MAX}, got {shown}"
        )
    return value


def _parse_positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return value


def _parse_names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _parse_client_transport(raw: str) -> str:
    value = raw.strip().lower()
    if value not in CLIENT_TRANSPORTS:
        raise ValueError(f"expected one of {', '.join(CLIENT_TRANSPORTS)}, got {raw!r}")
    return value


def _parse_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"unknown logging level {raw!r}")
    return value


def _setting(
    env: str,
    doc: str,
    parse: Callable[[str], Any] = str,
    secret: bool = False,
) -> dict[str, Any]:
    return {"env": env, "doc": doc, "parse": parse, "secret": secret}


@dataclass(frozen=True)
class Settings:
    """The effective configuration. Build one with :func:`get_settings`."""

    home: Path = field(
        default_factory=lambda: Path.home() / ".headway",
        metadata=_setting("HEADWAY_HOME", "Directory of the embedded store.", Path),
    )
    database_url: str | None = field(
        default=None,
        metadata=_setting(
            "HEADWAY_DATABASE_URL",
            "SQLAlchemy URL of the store; default: SQLite at $HEADWAY_HOME/headway.db.",
            secret=True,
        ),
    )
    database_pool_size: int = field(
        default=DEFAULT_POOL_SIZE,
        metadata=_setting(
            "HEADWAY_DATABASE_POOL_SIZE",
            "Most connections a process (each server process) holds to PostgreSQL: one for"
            " wake-ups and the rest a pool every thread borrows from, waiting when all are"
            " busy. Unused on SQLite.",
            _parse_pool_size,
        ),
    )
    api_url: str | None = field(
        default=None,
        metadata=_setting(
            "HEADWAY_API_URL",
            "Server to use instead of the embedded store (http://host:4200); several, separated"
            " by commas, are tried in turn when one cannot be reached.",
        ),
    )
    api_key: str | None = field(
        default=None,
        metadata=_setting(
            "HEADWAY_API_KEY", "Bearer key the server requires and the client sends.", secret=True
        ),
    )
    client_transport: str = field(
        default="stdlib",
        metadata=_setting(
            "HEADWAY_CLIENT_TRANSPORT",
            "How the client talks to a server: stdlib (headway's kept-alive transport on"
            " http.client, one write per request) or httpx (httpx's own transport).",
            _parse_client_transport,
        ),
    )
    api_keys: str | None = field(
        default=None,
        metadata=_setting(
            "HEADWAY_API_KEYS",
            "More keys the server accepts besides HEADWAY_API_KEY, comma-separated"
            " (for a key change: old and new both work until every client has the new one).",
            secret=True,
        ),
    )
    logging_level: str = field(
        default="INFO",
        metadata=_setting("HEADWAY_LOGGING_LEVEL", "Level of headway's own logs.", _parse_level),
    )
    task_runner_max_workers: int = field(
        default_factory=_default_max_workers,
        metadata=_setting(
            "HEADWAY_TASK_RUNNER_MAX_WORKERS",
            "Threads of the default ThreadPoolTaskRunner (Python's default: min(32, cpus + 4)).",
            _parse_positive_int,
        ),
    )
    concurrency_lease_seconds: float = field(
        default=30.0,
        metadata=_setting(
            "HEADWAY_CONCURRENCY_LEASE_SECONDS",
            "Lease of every slot; a dead holder's slots come back after it expires.",
            _parse_positive_float,
        ),
    )
    waiter_ttl_seconds: float = field(
        default=10.0,
        metadata=_setting(
            "HEADWAY_WAITER_TTL_SECONDS",
            "A waiting request not refreshed for this long leaves the queue.",
            _parse_positive_float,
        ),
    )
    scheduler_horizon_seconds: float = field(
        default=3600.0,
        metadata=_setting(
            "HEADWAY_SCHEDULER_HORIZON_SECONDS",
            "Scheduled runs of deployments are created this far ahead of their time.",
            _parse_positive_float,
        ),
    )
    late_after_seconds: float = field(
        default=15.0,
        metadata=_setting(
            "HEADWAY_LATE_AFTER_SECONDS",
            "A scheduled run not started this long after its time is marked Late.",
            _parse_positive_float,
        ),
    )
    events_retention_seconds: float = field(
        default=7 * 86400.0,
        metadata=_setting(
            "HEADWAY_EVENTS_RETENTION_SECONDS",
            "Events (slot grants, releases, reaps, ...) older than this are pruned by the server.",
            _parse_positive_float,
        ),
    )
    store_busy_timeout_seconds: float = field(
        default=60.0,
        metadata=_setting(
            "HEADWAY_STORE_BUSY_TIMEOUT_SECONDS",
            "How long a write waits for another process's SQLite write lock, and a call"
            " for a free pooled PostgreSQL connection.",
            _parse_positive_float,
        ),
    )
    server_host: str = field(
        default="127.0.0.1",
        metadata=_setting("HEADWAY_SERVER_HOST", "Address `headway server start` binds."),
    )
    server_allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata=_setting(
            "HEADWAY_SERVER_ALLOWED_HOSTS",
            "Host names a server without an API key answers to, besides loopback ones and"
            " the address it binds (comma-separated; * for any).",
            _parse_names,
        ),
    )
    server_port: int = field(
        default=4200,
        metadata=_setting(
            "HEADWAY_SERVER_PORT", "Port `headway server start` binds.", _parse_positive_int
        ),
    )
    server_fastpath: bool = field(
        default=True,
        metadata=_setting(
            "HEADWAY_SERVER_FASTPATH",
            "Serve slot acquire/release/renew below FastAPI's routing (same answers, less"
            " work per request); 0 serves them through the ordinary routes.",
            _parse_bool,
        ),
    )
    worker_limit: int = field(
        default=5,
        metadata=_setting(
            "HEADWAY_WORKER_LIMIT",
            "Most flow runs a `headway worker start` runs at once (its --limit); a worker"
            " claims no more than it has room for, so idle workers share a burst.",
            _parse_positive_int,
        ),
    )
    log_prints: bool = field(
        default=False,
        metadata=_setting(
            "HEADWAY_LOG_PRINTS", "Record print() of flows and tasks by default.", _parse_bool
        ),
    )

    @property
    def accepted_api_keys(self) -> tuple[str, ...]:
        """Every key the server accepts: HEADWAY_API_KEY, then each of HEADWAY_API_KEYS."""
        keys = [self.api_key] if self.api_key else []
        for item in (self.api_keys or "").split(","):
            key = item.strip()
            if key and key not in keys:
                keys.append(key)
        return tuple(keys)

    @property
    def effective_database_url(self) -> str:
        """The store URL: the explicit one, or SQLite under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'headway.db'}"


@dataclass(frozen=True)
class SettingView:
    """One line of ``headway config``."""

    name: str
    env: str
    value: str
    source: str
    doc: str


def get_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: ``os.environ``).

    Raises :class:`ConfigurationError` naming the variable when a value is invalid.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        var = f.metadata["env"]
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigurationError(f"{var}: {exc}") from None
    return Settings(**values)


def describe(settings: Settings, environ: Mapping[str, str] | None = None) -> list[SettingView]:
    """Each setting with its effective value (secrets masked) and its source."""
    env = os.environ if environ is None else environ
    out: list[SettingView] = []
    for f in fields(Settings):
        var = f.metadata["env"]
        value = getattr(settings, f.name)
        source = "env" if env.get(var) else "default"
        if value is None:
            shown = "(unset)"
        elif f.metadata["secret"]:
            shown = _mask(str(value))
        elif isinstance(value, tuple):
            shown = ",".join(value) or "(none)"
        else:
            shown = str(value)
        out.append(SettingView(f.name, var, shown, source, f.metadata["doc"]))
    return out


def _mask(value: str) -> str:
    if "://" in value and "@" in value:
        # Keep the scheme and host of a URL readable; hide its credentials.
        scheme, rest = value.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:****@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    if "://" in value:
        return value
    return "****"
