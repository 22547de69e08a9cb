"""``flow.to_deployment()``, ``headway.serve(*deployments)`` and ``ConcurrencyLimitConfig``.

Prefect's ``Flow.to_deployment`` builds a deployment without registering it;
``serve(a, b, ...)`` registers several and runs them all from one process.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

import headway
from headway import flow
from headway.client.base import get_client
from headway.core.schedules import CronSchedule, IntervalSchedule, RRuleSchedule
from headway.core.states import StateType
from headway.deployments import ConcurrencyLimitConfig, RunnerDeployment, run_deployment
from headway.exceptions import ValidationError
from helpers.processes import Processes
from helpers.waiting import wait_until


@flow
def compat_flow(name: str = "world") -> str:
    """Say hello."""
    return f"hello {name}"


def test_to_deployment_returns_a_runner_deployment() -> None:
    """Prefect: ``TestFlowToDeployment.TestSync.test_to_deployment_returns_runner_deployment``
    in tests/test_flows.py."""
    deployment = compat_flow.to_deployment(
        name="test",
        tags=["price", "luggage"],
        parameters={"name": "Arthur"},
        concurrency_limit=42,
        description="This is a test",
        version="alpha",
        enforce_parameter_schema=True,
    )
    assert isinstance(deployment, RunnerDeployment)
    assert deployment.name == "test"
    assert deployment.flow_name == "compat-flow"
    assert deployment.tags == ["price", "luggage"]
    assert deployment.parameters == {"name": "Arthur"}
    assert deployment.concurrency_limit == 42
    assert deployment.description == "This is a test"
    assert deployment.version == "alpha"
    # Nothing is registered until it is served or applied.
    assert get_client().list_deployments() == []


def test_to_deployment_accepts_interval_cron_and_rrule() -> None:
    """Prefect: ``test_to_deployment_accepts_interval``, ``test_to_deployment_accepts_cron``
    and ``test_to_deployment_accepts_rrule`` in tests/test_flows.py (TestFlowToDeployment)."""
    by_interval = compat_flow.to_deployment(name="test", interval=3600).schedules[0].schedule
    assert isinstance(by_interval, IntervalSchedule)
    assert by_interval.interval_seconds == 3600
    by_cron = compat_flow.to_deployment(name="test", cron="* * * * *").schedules[0].schedule
    assert isinstance(by_cron, CronSchedule)
    assert by_cron.cron == "* * * * *"
    by_rrule = compat_flow.to_deployment(name="test", rrule="FREQ=MINUTELY").schedules[0].schedule
    assert isinstance(by_rrule, RRuleSchedule)
    assert by_rrule.rrule.endswith("FREQ=MINUTELY")


def test_to_deployment_refuses_a_name_with_a_slash() -> None:
    """Prefect: ``test_to_deployment_invalid_name_raises`` in tests/test_flows.py.

    Prefect raises ``InvalidNameError``; headway's ``ValidationError`` is a ``ValueError``."""
    with pytest.raises(ValidationError, match="must not contain '/'"):
        compat_flow.to_deployment("test/deployment")


def test_to_deployment_respects_with_options_name() -> None:
    """Prefect: ``test_to_deployment_respects_with_options_name_from_flow``
    in tests/test_flows.py."""
    renamed = compat_flow.with_options(name="new-name")
    deployment = renamed.to_deployment(name="test-deployment")
    assert deployment.name == "test-deployment"
    assert deployment.flow_name == "new-name"
    assert deployment.full_name == "new-name/test-deployment"


def test_to_deployment_accepts_a_concurrency_limit_config() -> None:
    """Prefect: ``test_to_deployment_accepts_concurrency_limit`` in tests/test_flows.py."""
    config = ConcurrencyLimitConfig(limit=42, collision_strategy="CANCEL_NEW")
    deployment = compat_flow.to_deployment(name="test", concurrency_limit=config)
    assert deployment.concurrency_limit == 42
    assert deployment.concurrency_options is not None
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
    deployment.apply()
    stored = get_client().read_deployment("compat-flow/test")
    assert (stored.concurrency_limit, stored.collision_strategy) == (42, "CANCEL_NEW")


def test_to_deployment_refuses_what_needs_parts_headway_does_not_have() -> None:
    """Prefect: ``test_to_deployment_returns_runner_deployment`` in tests/test_flows.py
    passes ``triggers``; headway has no automations, so it says so instead of dropping them
    (a deliberate difference, listed in docs/coming-from-prefect.md)."""
    with pytest.raises(ValidationError, match="triggers"):
        compat_flow.to_deployment(name="test", triggers=[{"name": "x"}])


@pytest.mark.parametrize("seconds", [None, 60, 3600, 86_400])
def test_grace_period_seconds_in_range(seconds: int | None) -> None:
    """Prefect: ``test_grace_period_seconds_default_none``,
    ``test_grace_period_seconds_minimum_boundary_valid``,
    ``test_grace_period_seconds_maximum_boundary_valid`` and
    ``test_grace_period_seconds_mid_range_valid`` in tests/client/schemas/test_concurrency.py
    (TestConcurrencyLimitConfigValidation)."""
    config = ConcurrencyLimitConfig(limit=1, grace_period_seconds=seconds)
    assert config.grace_period_seconds == seconds
    assert config.collision_strategy == "ENQUEUE"


@pytest.mark.parametrize("seconds", [59, 86_401, 0, -1, 2**63])
def test_grace_period_seconds_out_of_range(seconds: int) -> None:
    """Prefect: ``test_grace_period_seconds_below_minimum_invalid`` and
    ``test_grace_period_seconds_above_maximum_invalid``
    in tests/client/schemas/test_concurrency.py: a ``ValueError`` naming the bound."""
    with pytest.raises(ValueError, match="between 60 and 86400"):
        ConcurrencyLimitConfig(limit=1, grace_period_seconds=seconds)


SERVED = """
from headway import flow, serve


@flow
def first(x: int = 1) -> int:
    return x + 1


@flow
def second(word: str = "a") -> str:
    return word * 2


if __name__ == "__main__":
    serve(
        first.to_deployment("one", interval=3600),
        second.to_deployment("two", cron="* * * * *"),
    )
"""


def test_serve_runs_several_deployments_in_one_process(tmp_path: Path) -> None:
    """Prefect: ``test_serve_can_create_multiple_deployments`` and
    ``test_serve_prints_help_message_on_startup`` in tests/runner/test_runner.py.

    Both deployments are registered with their schedules, both run in the one
    serving process, and the start message says how to run one by hand."""
    script = tmp_path / "served.py"
    script.write_text(SERVED)
    client = get_client()
    with Processes(tmp_path) as procs:
        proc = procs.start([sys.executable, str(script)], name="serve", cwd=tmp_path)
        wait_until(
            lambda: "headway deployment run 'second/two'" in procs.output(proc),
            "serve() printed its start message",
            alive=proc,
            log=procs.log_of(proc),
        )
        one = client.read_deployment("first/one")
        two = client.read_deployment("second/two")
        assert one.work_pool is None and two.work_pool is None
        assert one.schedules[0].schedule["interval"] == 3600
        assert two.schedules[0].schedule["cron"] == "* * * * *"
        assert "headway deployment run 'first/one'" in procs.output(proc)
        ran_one = run_deployment("first/one", parameters={"x": 41}, timeout=60)
        ran_two = run_deployment("second/two", timeout=60)
        assert ran_one.state.type is StateType.COMPLETED, ran_one.state
        assert ran_two.state.type is StateType.COMPLETED, ran_two.state
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, procs.output(proc)


def test_serve_ignores_a_work_pool_with_a_warning() -> None:
    """Prefect: ``test_serve_raises_if_runner_deployment_sets_work_pool_name``
    in tests/runner/test_runner.py: a ``UserWarning``, and the pool is dropped."""
    from headway.deployments.runner_deployment import served_specs

    deployment = compat_flow.to_deployment("test", work_pool_name="foo")
    with pytest.warns(UserWarning, match="work pool 'foo' is ignored"):
        (spec,) = served_specs([deployment])
    assert spec.work_pool is None


def test_serve_is_exported_at_the_top_level() -> None:
    """Prefect: ``from prefect import serve`` (tests/runner/test_runner.py imports it)."""
    from headway.deployments import serve

    assert headway.serve is serve
