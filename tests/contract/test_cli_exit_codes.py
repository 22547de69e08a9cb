"""Exit codes scripts can trust: every command, every way it can end.

``headway.cli.main`` is the console script's body: what it returns is the
process's exit code. Bad input exits 2 with one line and no traceback (more
cases in test_bad_input.py); ``deployment run --wait`` exits 0 only for a
COMPLETED run (the codes are in ``headway.cli``'s docstring and the command's
help).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from headway.cli import RUN_EXIT_CODES, RUN_NOT_ENDED_EXIT_CODE
from headway.cli import main as cli_main
from headway.cli.app import app
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.states import TERMINAL, Running, State, StateType
from helpers.waiting import wait_until


def _commands() -> Iterator[tuple[list[str], Any]]:
    """Every leaf command of the CLI, with the words that reach it."""
    stack: list[tuple[list[str], Any]] = [([], typer.main.get_command(app))]
    while stack:
        words, command = stack.pop()
        subcommands = getattr(command, "commands", None)
        if isinstance(subcommands, dict):
            for name, sub in subcommands.items():
                stack.append(([*words, name], sub))
        else:
            yield words, command


COMMANDS = sorted(_commands(), key=lambda item: item[0])


def _one_error_line(err: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err


@pytest.mark.slow
def test_every_command_refuses_bad_usage_with_exit_2_and_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert len(COMMANDS) >= 40
    failures: list[str] = []
    for words, command in COMMANDS:
        cases = [[*words, "--no-such-option"]]
        if any(p.required for p in command.params):
            cases.append(list(words))  # a required argument or option missing
        for args in cases:
            code = cli_main(args)
            _, err = capsys.readouterr()
            if code != 2 or not _one_error_line(err):
                failures.append(f"{' '.join(args)}: exit {code}, stderr {err[:200]!r}")
    for args in (["no-such-command"], ["deployment", "no-such-verb"], ["--no-such-flag"]):
        code = cli_main(args)
        _, err = capsys.readouterr()
        if code != 2 or not _one_error_line(err):
            failures.append(f"{' '.join(args)}: exit {code}, stderr {err[:200]!r}")
    assert failures == []


def test_help_and_success_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--help"]) == 0
    assert cli_main(["deployment", "run", "--help"]) == 0
    out, _ = capsys.readouterr()
    # The codes a script can rely on are in the command's own help.
    assert "3 CANCELLED" in " ".join(out.split())


@pytest.fixture
def deployment(client: Client, backend_name: str, tmp_path: Path) -> str:
    if backend_name not in ("embedded-sqlite", "server-postgres"):
        pytest.skip("runs on the two ends of the backend matrix")
    client.create_work_pool("pool")
    client.apply_deployment(
        DeploymentSpec(
            flow_name="fn", name="dep", entrypoint=f"{tmp_path}/flows.py:fn", work_pool="pool"
        )
    )
    return "fn/dep"


def _run_of(client: Client, name: str) -> str:
    runs: list[Any] = []

    def created() -> bool:
        runs[:] = client.list_flow_runs(deployment=name)
        return bool(runs)

    wait_until(created, "the command created a run")
    return str(runs[0].id)


@pytest.mark.parametrize("final", sorted(TERMINAL))
def test_deployment_run_wait_exits_with_its_runs_final_state(
    client: Client, deployment: str, final: StateType, capsys: pytest.CaptureFixture[str]
) -> None:
    codes: list[int] = []
    args = ["deployment", "run", deployment, "--wait", "--timeout", "60"]
    waiting = threading.Thread(target=lambda: codes.append(cli_main(args)), daemon=True)
    waiting.start()
    # The test plays the worker: the run starts, then ends in ``final``.
    run_id = _run_of(client, deployment)
    client.set_flow_run_state(run_id, Running())
    client.set_flow_run_state(run_id, State(final, message="as the test says"))
    waiting.join(60)
    assert not waiting.is_alive()
    out, err = capsys.readouterr()
    assert codes == [RUN_EXIT_CODES[final]], (out, err)
    assert (codes[0] == 0) is (final is StateType.COMPLETED)
    assert f"is {final.value.capitalize()}" in out


def test_deployment_run_wait_past_its_timeout_exits_5(
    client: Client, deployment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No worker: the run stays SCHEDULED.
    code = cli_main(["deployment", "run", deployment, "--wait", "--timeout", "0.2"])
    out, _ = capsys.readouterr()
    assert code == RUN_NOT_ENDED_EXIT_CODE == 5, out
    assert "Scheduled" in out


def test_the_exit_codes_are_distinct() -> None:
    codes = [*RUN_EXIT_CODES.values(), RUN_NOT_ENDED_EXIT_CODE]
    assert len(set(codes)) == len(codes)
    assert 2 not in codes  # 2 stays "bad input"
