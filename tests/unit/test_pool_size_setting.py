"""HEADWAY_DATABASE_POOL_SIZE: a whole number from 2 to 10,000, default 10; anything else is
one clear error naming the variable, before anything is opened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from headway.exceptions import ConfigurationError
from headway.settings import POOL_SIZE_MAX, POOL_SIZE_MIN, describe, get_settings

VAR = "HEADWAY_DATABASE_POOL_SIZE"


def test_the_default_is_ten_and_headway_config_shows_it() -> None:
    settings = get_settings({})
    assert settings.database_pool_size == 10
    view = {v.env: v for v in describe(settings, {})}[VAR]
    assert (view.value, view.source) == ("10", "default")
    assert "PostgreSQL" in view.doc


@pytest.mark.parametrize(("raw", "value"), [("2", 2), (" 4 ", 4), ("10000", 10_000)])
def test_whole_numbers_within_the_bounds_are_taken(raw: str, value: int) -> None:
    settings = get_settings({VAR: raw})
    assert settings.database_pool_size == value
    assert {v.env: v for v in describe(settings, {VAR: raw})}[VAR].source == "env"


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "1",  # no room for the wake-up listener and a connection to borrow
        "-4",
        "10001",
        str(2**31),
        str(2**63),
        "9" * 5000,  # past Python's own limit on digits
        "ten",
        "4.5",
        "1e3",
        "0x10",
        "nan",
        "inf",
        "4 connections",
    ],
)
def test_anything_else_is_one_clear_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_settings({VAR: raw})
    message = str(caught.value)
    assert message.startswith(f"{VAR}: ")
    assert "\n" not in message and len(message) < 200
    assert "between 2" in message or "whole number" in message


@hypothesis_settings(derandomize=True, max_examples=300)
@given(st.integers(min_value=-(2**64), max_value=2**64))
def test_an_integer_is_taken_exactly_when_within_the_bounds(value: int) -> None:
    if POOL_SIZE_MIN <= value <= POOL_SIZE_MAX:
        assert get_settings({VAR: str(value)}).database_pool_size == value
    else:
        with pytest.raises(ConfigurationError, match=VAR):
            get_settings({VAR: str(value)})


@hypothesis_settings(derandomize=True, max_examples=300)
@given(st.text(max_size=40))
def test_any_text_is_a_number_taken_or_a_configuration_error(raw: str) -> None:
    try:
        value = get_settings({VAR: raw}).database_pool_size
    except ConfigurationError as exc:
        assert str(exc).startswith(f"{VAR}: ")
        return
    # Taken: an empty value means the default, anything else said a number in bounds.
    assert value == 10 if raw == "" else POOL_SIZE_MIN <= value <= POOL_SIZE_MAX


def test_a_server_refuses_a_bad_pool_size_in_one_line_and_opens_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "headway"), "server", "start"],
        env={**env, "HEADWAY_HOME": str(tmp_path / "home"), VAR: "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {VAR}: "), result.stderr
    assert not (tmp_path / "home").exists()  # no store was made
