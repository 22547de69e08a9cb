"""Prefect's command line spellings and options, as headway accepts them.

Each test runs the CLI in this process (``headway.cli.main``) against the
test's own store. headway keeps its exit codes (2 and one line on stderr for
bad input, where Prefect exits 1): a deliberate difference listed in
docs/coming-from-prefect.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from headway.client.base import get_client
from headway.core.deployments import DeploymentSpec
from helpers.cli import Captured, cli, ok, refused


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("work-pools", "work-pool"),
        ("deployments", "deployment"),
        ("concurrency-limits", "concurrency-limit"),
        ("global-concurrency-limits", "gcl"),
    ],
)
def test_plural_nouns_are_accepted(capsys: Captured, plural: str, singular: str) -> None:
    """Prefect: the command groups of src/prefect/cli/work_pool.py, deployment.py and
    concurrency_limit.py carry their plural as an alias (``alias="work-pools"``, ...), as
    tests/cli/test_work_pool.py ``test_ls`` uses them; headway adds the plural of
    ``global-concurrency-limit`` (whose short form ``gcl`` both have) for symmetry."""
    assert ok(capsys, plural, "ls", "-o", "json").strip() == "[]"
    assert ok(capsys, singular, "ls", "-o", "json").strip() == "[]"


def test_work_pool_create_with_type(capsys: Captured) -> None:
    """Prefect: ``TestCreate.test_create_process_work_pool`` and
    ``test_create_with_unsupported_type`` in tests/cli/test_work_pool.py: ``--type process``
    makes a process pool; a type that cannot be served is refused and nothing is made."""
    ok(capsys, "work-pool", "create", "p", "-t", "process")
    assert get_client().read_work_pool("p").type == "process"
    err = refused(capsys, "work-pool", "create", "k", "--type", "kubernetes")
    assert "'kubernetes' is not supported" in err
    assert [p.name for p in get_client().list_work_pools()] == ["p"]


def test_concurrency_limit_create_again_updates_the_limit(capsys: Captured) -> None:
    """Prefect: ``concurrency-limit create TAG N`` in src/prefect/cli/concurrency_limit.py
    creates or updates the tag's limit (the server's create is an upsert by tag)."""
    ok(capsys, "concurrency-limit", "create", "db", "3")
    out = ok(capsys, "concurrency-limit", "create", "db", "5")
    assert "Updated tag limit 'db'" in out
    assert get_client().read_limit("tag:db").limit == 5


def test_concurrency_limit_ls_pages(capsys: Captured) -> None:
    """Prefect: ``concurrency-limit ls --limit N --offset M`` in
    src/prefect/cli/concurrency_limit.py (``test_listing_concurrency_limits`` in
    tests/cli/test_global_concurrency_limit.py lists them)."""
    for tag in ("a", "b", "c"):
        ok(capsys, "concurrency-limit", "create", tag, "1")
    shown = json.loads(
        ok(capsys, "concurrency-limits", "ls", "--limit", "1", "--offset", "1", "-o", "json")
    )
    assert [item["name"] for item in shown] == ["tag:b"]


def test_gcl_delete_asks_only_at_a_terminal(capsys: Captured) -> None:
    """Prefect: ``test_deleting_gcl_succeeds`` in tests/cli/test_global_concurrency_limit.py:
    without a terminal (a script, a test) the limit is deleted without a question."""
    ok(capsys, "gcl", "create", "db", "--limit", "2")
    assert "Deleted 'db'" in ok(capsys, "gcl", "delete", "db")
    assert get_client().list_limits() == []


FLOWS = """
from headway import flow


@flow
def greet(name: str = "you") -> str:
    return name
"""


def _deploy(capsys: Captured, tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    (tmp_path / "flows.py").write_text(FLOWS)
    ok(capsys, "work-pool", "create", "p")
    return cli(
        capsys, "deploy", str(tmp_path / "flows.py") + ":greet", "--name", "d", "--pool", "p",
        "--project-root", str(tmp_path), *extra,
    )  # fmt: skip


def test_deploy_with_short_concurrency_limit_prints_the_run_hint(
    capsys: Captured, tmp_path: Path
) -> None:
    """Prefect: ``test_deploy_with_concurrency_limit`` style cases in tests/cli/test_deploy.py
    (``-cl``/``--concurrency-limit``), and the ``prefect deployment run '<flow>/<name>'``
    hint ``prefect deploy`` prints after registering."""
    code, out, err = _deploy(capsys, tmp_path, "-cl", "2")
    assert code == 0, err
    assert "headway deployment run 'greet/d'" in out
    assert get_client().read_deployment("greet/d").concurrency_limit == 2


def test_deploy_collision_strategy_without_a_limit_warns(capsys: Captured, tmp_path: Path) -> None:
    """Prefect: in src/prefect/cli/deploy/_core.py a collision strategy without a limit is
    not an error: the deployment is made with no limit. headway says so on stderr."""
    code, _, err = _deploy(capsys, tmp_path, "--collision-strategy", "CANCEL_NEW")
    assert code == 0, err
    assert "ignored without --concurrency-limit" in err
    assert get_client().read_deployment("greet/d").concurrency_limit is None


def _served_deployment() -> str:
    spec = DeploymentSpec(flow_name="greet", name="d", parameter_schema=None)
    return get_client().apply_deployment(spec).id


def test_deployment_run_with_params_and_start_in(capsys: Captured) -> None:
    """Prefect: ``test_start_in_option_schedules_flow_run`` in
    tests/cli/deployment/test_deployment_run.py, and ``--params`` (a JSON object) of
    ``prefect deployment run``: the run is created for later, with the parameters."""
    _served_deployment()
    before = datetime.now(UTC)
    ok(capsys, "deployment", "run", "greet/d", "--params", '{"name": "ann"}', "--start-in", "2h")
    (run,) = get_client().list_flow_runs(deployment="greet/d")
    assert run.parameters == {"name": "ann"}
    assert run.expected_start_time is not None
    assert run.expected_start_time - before >= timedelta(hours=2) - timedelta(seconds=5)


def test_deployment_run_start_at_and_by_id(capsys: Captured) -> None:
    """Prefect: ``test_start_at_option_with_tz_schedules_flow_run`` in
    tests/cli/deployment/test_deployment_run.py, and ``--id``."""
    dep_id = _served_deployment()
    ok(capsys, "deployment", "run", "--id", dep_id, "--start-at", "2040-01-02T03:04:05+00:00")
    (run,) = get_client().list_flow_runs(deployment="greet/d")
    assert run.expected_start_time == datetime(2040, 1, 2, 3, 4, 5, tzinfo=UTC)


def _tagged_deployment() -> None:
    spec = DeploymentSpec(flow_name="greet", name="d", tags=("test",), parameter_schema=None)
    get_client().apply_deployment(spec)


def test_deployment_run_tags_are_added_to_the_deployments(capsys: Captured) -> None:
    """Prefect: ``test_run_deployment_watch`` in tests/cli/deployment/test_deployment_run.py:
    ``deployment run NAME --tag cool-tag`` makes a run whose tags are the deployment's
    (``test``) and the given one. headway keeps the deployment's first, then the new ones,
    each once; ``-o json`` and ``flow-run inspect`` show them."""
    _tagged_deployment()
    ok(capsys, "deployment", "run", "greet/d", "--tag", "cool-tag", "--tag", "test",
       "--tag", "other")  # fmt: skip
    (run,) = get_client().list_flow_runs(deployment="greet/d")
    assert run.tags == ("test", "cool-tag", "other")
    shown = json.loads(ok(capsys, "flow-run", "inspect", run.id, "-o", "json"))
    assert shown["tags"] == ["test", "cool-tag", "other"]
    assert "test, cool-tag, other" in ok(capsys, "flow-run", "inspect", run.id)
    # A tag that cannot be a tag is refused, and no run is made.
    assert "tag" in refused(capsys, "deployment", "run", "greet/d", "--tag", " padded")
    assert len(get_client().list_flow_runs(deployment="greet/d")) == 1


def test_deployment_run_sets_a_templated_flow_run_name(capsys: Captured) -> None:
    """Prefect: ``TestDeploymentRun.test_sets_templated_flow_run_name`` in
    tests/cli/deployment/test_deployment_cli.py: ``--flow-run-name "hello-{name}"`` with
    ``--param name=tester`` names the run ``hello-tester``."""
    _tagged_deployment()
    out = ok(capsys, "deployment", "run", "greet/d", "--flow-run-name", "hello-{name}",
             "--param", "name=tester")  # fmt: skip
    (run,) = get_client().list_flow_runs(deployment="greet/d")
    assert run.name == "hello-tester"
    assert "'hello-tester'" in out
    listed = json.loads(ok(capsys, "flow-run", "ls", "-o", "json"))
    assert [r["name"] for r in listed] == ["hello-tester"]
    # A plain name is taken as it is.
    ok(capsys, "deployment", "run", "greet/d", "--flow-run-name", "nightly")
    assert {r.name for r in get_client().list_flow_runs(deployment="greet/d")} == {
        "hello-tester",
        "nightly",
    }


def test_deployment_run_flow_run_name_missing_a_parameter_is_refused(capsys: Captured) -> None:
    """Prefect: ``TestDeploymentRun.test_raises_error_on_missing_template_param`` in
    tests/cli/deployment/test_deployment_cli.py: ``--flow-run-name "hello-{missing}"`` fails
    naming ``missing`` (Prefect exits 1; headway 2, as for all bad input) and makes no run."""
    _tagged_deployment()
    err = refused(capsys, "deployment", "run", "greet/d", "--flow-run-name", "hello-{missing}")
    assert "'missing'" in err
    assert get_client().list_flow_runs(deployment="greet/d") == []


def test_deployment_run_start_in_and_start_at_together_are_refused(capsys: Captured) -> None:
    """Prefect: ``test_both_start_in_and_start_at_raises`` and
    ``test_start_at_option_invalid_input`` in tests/cli/deployment/test_deployment_run.py.
    (Prefect exits 1; headway 2, as for all bad input.)"""
    _served_deployment()
    assert "one of" in refused(
        capsys, "deployment", "run", "greet/d", "--start-in", "5m", "--start-at", "2040-01-01"
    )
    assert "ISO 8601" in refused(capsys, "deployment", "run", "greet/d", "--start-at", "foobar")
    assert "JSON" in refused(capsys, "deployment", "run", "greet/d", "--params", "{nope")
    assert get_client().list_flow_runs(deployment="greet/d") == []


def test_deployment_delete_by_id_and_all(capsys: Captured) -> None:
    """Prefect: ``prefect deployment delete --id`` and ``--all``
    (src/prefect/cli/deployment.py)."""
    dep_id = _served_deployment()
    assert dep_id in ok(capsys, "deployment", "delete", "--id", dep_id)
    _served_deployment()
    get_client().apply_deployment(DeploymentSpec(flow_name="greet", name="e"))
    assert "Deleted 2 deployment(s)" in ok(capsys, "deployments", "delete", "--all")
    assert get_client().list_deployments() == []
    refused(capsys, "deployment", "delete", "--id", "no-such-id")


def test_work_pool_update_and_ls_verbose(capsys: Captured) -> None:
    """Prefect: ``TestUpdate.test_update_concurrency_limit`` and ``TestLS.test_verbose``
    in tests/cli/test_work_pool.py."""
    ok(capsys, "work-pool", "create", "p", "--description", "nightly jobs")
    assert "concurrency limit 5" in ok(
        capsys, "work-pool", "update", "p", "--concurrency-limit", "5"
    )
    assert get_client().read_work_pool("p").concurrency_limit == 5
    out = ok(capsys, "work-pools", "ls", "--verbose")
    assert "process" in out and "nightly jobs" in out
    assert str(get_client().read_work_pool("p").id) in out  # Prefect's table has an ID column
    refused(capsys, "work-pool", "update", "p")


def test_gcl_inspect_writes_a_file(capsys: Captured, tmp_path: Path) -> None:
    """Prefect: ``prefect gcl inspect NAME -o json --file PATH`` in
    src/prefect/cli/global_concurrency_limit.py (``test_inspecting_gcl_with_json_output``
    in tests/cli/test_global_concurrency_limit.py checks the JSON it writes)."""
    ok(capsys, "gcl", "create", "db", "--limit", "3")
    target = tmp_path / "db.json"
    assert "written to" in ok(capsys, "gcl", "inspect", "db", "-o", "json", "--file", str(target))
    assert json.loads(target.read_text())["limit"] == 3
    assert "--file needs -o json" in refused(capsys, "gcl", "inspect", "db", "--file", str(target))
