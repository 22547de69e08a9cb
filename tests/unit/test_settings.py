"""Settings: defaults, environment overrides, clear errors, masked secrets."""

from __future__ import annotations

import os
import subprocess
import sys
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
        ("HEADWAY_CLIENT_TRANSPORT", "curl"),
        ("HEADWAY_CLIENT_TRANSPORT", "httpx2"),
        ("HEADWAY_SERVER_FASTPATH", "sometimes"),
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


def test_the_speed_switches_default_on_and_are_shown_by_config() -> None:
    defaults = get_settings({})
    assert (defaults.client_transport, defaults.server_fastpath) == ("stdlib", True)
    env = {"HEADWAY_CLIENT_TRANSPORT": " HTTPX ", "HEADWAY_SERVER_FASTPATH": "0"}
    settings = get_settings(env)
    assert (settings.client_transport, settings.server_fastpath) == ("httpx", False)
    shown = {v.env: (v.value, v.source) for v in describe(settings, env)}
    assert shown["HEADWAY_CLIENT_TRANSPORT"] == ("httpx", "env")
    assert shown["HEADWAY_SERVER_FASTPATH"] == ("False", "env")


def test_a_bad_transport_says_which_values_are_allowed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_settings({"HEADWAY_CLIENT_TRANSPORT": "curl"})
    assert str(caught.value) == (
        "HEADWAY_CLIENT_TRANSPORT: expected one of stdlib, httpx, got 'curl'"
    )


@pytest.mark.parametrize(
    ("var", "value"), [("HEADWAY_CLIENT_TRANSPORT", "curl"), ("HEADWAY_SERVER_FASTPATH", "maybe")]
)
def test_headway_config_refuses_a_bad_switch_in_one_line_with_exit_2(
    var: str, value: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "headway"), "config"],
        env={**env, "HEADWAY_HOME": str(tmp_path), var: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {var}: ") and repr(value) in lines[0]
