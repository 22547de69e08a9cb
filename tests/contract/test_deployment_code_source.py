"""A deployment's code source round-trips on every backend; a bad one is refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.exceptions import ValidationError


def spec(**fields: object) -> DeploymentSpec:
    return DeploymentSpec(
        flow_name="etl", name="d", entrypoint="flows/etl.py:etl", work_pool="pool", **fields
    )  # type: ignore[arg-type]


def test_code_source_round_trips(client: Client) -> None:
    client.create_work_pool("pool")
    made = client.apply_deployment(spec(code_repository="https://git.example/r.git", code_ref="v2"))
    assert (made.code_repository, made.code_ref) == ("https://git.example/r.git", "v2")
    read = client.read_deployment("etl/d")
    assert (read.entrypoint, read.code_repository, read.code_ref) == (
        "flows/etl.py:etl",
        "https://git.example/r.git",
        "v2",
    )
    # Applying without one removes it: the worker's directory again.
    client.apply_deployment(spec())
    assert client.read_deployment("etl/d").code_repository is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"code_ref": "main"}, "a code ref needs a code repository"),
        ({"code_repository": "--upload-pack=x"}, "invalid code repository"),
        ({"code_repository": "r.git", "code_ref": "a b"}, "invalid code ref"),
    ],
)
def test_bad_code_source_is_refused(
    client: Client, fields: dict[str, object], message: str
) -> None:
    client.create_work_pool("pool")
    with pytest.raises(ValidationError, match=message):
        client.apply_deployment(spec(**fields))
    assert client.list_deployments() == []


def test_bad_code_source_over_http_is_422_json(server_backend: Any) -> None:
    body = {"flow_name": "etl", "name": "d", "code_repository": "-x"}
    got = httpx.post(
        f"{server_backend.api_url}/api/v1/deployments",
        json=body,
        headers={"Authorization": f"Bearer {server_backend.env['HEADWAY_API_KEY']}"},
    )
    assert got.status_code == 422
    assert "invalid code repository" in got.json()["detail"]
