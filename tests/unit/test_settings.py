"""Settings: defaults, environment overrides, clear errors, masked secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headway.exceptions import ConfigurationError
from headway.settings import describe, get_settings


def test_defaults() -> None:
    settings = get_settings({})
    assert settings.home == Path.home() / ".headway"
    assert settings.task_runner_max_workers == min(32, (os.cpu_count() or 1) + 4)
    assert settings.concurrency_lease_seconds == 30.0
    assert settings.effective_database_url.endswith("/.headway/headway.db")
    assert settings.api_url is None


def test_environment_overrides_and_sources(tmp_path: Path) -> None:
    env = {
        "HEADWAY_HOME": str(tmp_path),
        "HEADWAY_TASK_RUNNER_MAX_WORKERS": "3",
        "HEADWAY_LOGGING_LEVEL": "debug",
    }
    settings = get_settings(env)
    assert settings.home == tmp_path
    assert settings.task_runner_max_workers == 3
    assert settings.logging_level == "DEBUG"
    views = {v.env: v for v in describe(settings, env)}
    assert views["HEADWAY_TASK_RUNNER_MAX_WORKERS"].source == "env"
    assert views["HEADWAY_CONCURRENCY_LEASE_SECONDS"].source == "default"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("HEADWAY_TASK_RUNNER_MAX_WORKERS", "0"),
        ("HEADWAY_TASK_RUNNER_MAX_WORKERS", "many"),
        ("HEADWAY_CONCURRENCY_LEASE_SECONDS", "-1"),
        ("HEADWAY_LOGGING_LEVEL", "LOUD"),
        ("HEADWAY_LOG_PRINTS", "maybe"),
    ],
)
def test_invalid_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=var):
        get_settings({var: value})


def test_secrets_are_masked() -> None:
    env = {
        "HEADWAY_API_KEY": "s3cret-key",
        "HEADWAY_DATABASE_URL": "postgresql+psycopg://app:hunter2@db.example/headway",
    }
    shown = {v.env: v.value for v in describe(get_settings(env), env)}
    assert "s3cret" not in shown["HEADWAY_API_KEY"]
    assert "hunter2" not in shown["HEADWAY_DATABASE_URL"]
    assert shown["HEADWAY_DATABASE_URL"] == "postgresql+psycopg://app:****@db.example/headway"


def test_allowed_hosts_are_a_list_shown_by_config() -> None:
    env = {"HEADWAY_SERVER_ALLOWED_HOSTS": " headway.internal, 10.0.0.5 ,"}
    settings = get_settings(env)
    assert settings.server_allowed_hosts == ("headway.internal", "10.0.0.5")
    shown = {v.env: v.value for v in describe(settings, env)}
    assert shown["HEADWAY_SERVER_ALLOWED_HOSTS"] == "headway.internal,10.0.0.5"
    assert {v.env: v.value for v in describe(get_settings({}), {})}[
        "HEADWAY_SERVER_ALLOWED_HOSTS"
    ] == "(none)"
