"""A deployment run's own name and tags, given when it is made, on every backend."""

from __future__ import annotations

import pytest

from headway import exceptions
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.deployments import run_deployment


def _deploy(client: Client) -> str:
    spec = DeploymentSpec(flow_name="etl", name="nightly", tags=("team-a", "etl"))
    return client.apply_deployment(spec).full_name


def test_a_run_gets_the_name_and_the_tags_it_is_given(client: Client) -> None:
    name = _deploy(client)
    run = client.create_deployment_run(
        name, flow_run_name="backfill-2024", tags=["urgent", "etl", "urgent"]
    )
    assert run.name == "backfill-2024"
    # The deployment's tags first, then the new ones, each once.
    assert run.tags == ("team-a", "etl", "urgent")
    again = client.read_flow_run(run.id)
    assert (again.name, again.tags) == ("backfill-2024", ("team-a", "etl", "urgent"))
    # Without them: a generated name, the deployment's tags.
    plain = client.create_deployment_run(name)
    assert plain.name.startswith("nightly-") and plain.tags == ("team-a", "etl")


def test_run_deployment_passes_the_name_and_tags_on(client: Client) -> None:
    name = _deploy(client)
    run = run_deployment(name, timeout=0, flow_run_name="by-hand", tags=("x",), client=client)
    assert (run.name, run.tags) == ("by-hand", ("team-a", "etl", "x"))


@pytest.mark.parametrize(
    "options",
    [
        {"flow_run_name": ""},
        {"flow_run_name": " padded"},
        {"flow_run_name": "x" * 201},
        {"tags": [""]},
        {"tags": ["bad\ntag"]},
        {"tags": ["t"] * 101},
    ],
)
def test_a_bad_name_or_tag_makes_no_run(client: Client, options: dict[str, object]) -> None:
    name = _deploy(client)
    with pytest.raises(exceptions.ValidationError):
        client.create_deployment_run(name, **options)  # type: ignore[arg-type]
    assert client.list_flow_runs(deployment=name) == []
