"""serve() and deploy() store the entrypoint relative to the project root."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from headway.core.deployments import validate_code_source
from headway.deployments.deploy import build_spec, relative_to_root
from headway.exceptions import ValidationError
from headway.worker.execute import load_flow

FLOW = """
from headway.flows import flow


@flow
def etl() -> int:
    return 1
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "flows").mkdir(parents=True)
    (root / "flows" / "etl.py").write_text(FLOW)
    return root


def test_relative_to_the_working_directory_by_default(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = load_flow(f"{project}/flows/etl.py:etl")
    monkeypatch.chdir(project)
    assert build_spec(flow, name="d").entrypoint == "flows/etl.py:etl"
    monkeypatch.chdir(project / "flows")
    assert build_spec(flow, name="d").entrypoint == "etl.py:etl"


def test_relative_to_a_given_project_root(project: Path, tmp_path: Path) -> None:
    flow = load_flow(f"{project}/flows/etl.py:etl")
    spec = build_spec(flow, name="d", project_root=project, code_repository="https://x/r.git")
    assert spec.entrypoint == "flows/etl.py:etl"
    assert (spec.code_repository, spec.code_ref) == ("https://x/r.git", None)


def test_outside_the_root_the_path_stays_absolute(project: Path, tmp_path: Path) -> None:
    flow = load_flow(f"{project}/flows/etl.py:etl")
    other = tmp_path / "other"
    other.mkdir()
    assert build_spec(flow, name="d", project_root=other).entrypoint == (
        f"{project.resolve()}/flows/etl.py:etl"
    )
    assert relative_to_root(project / "flows" / "etl.py", other) is None


@pytest.mark.parametrize(
    ("repository", "ref"),
    [(None, "main"), ("", None), ("-u", None), ("r.git", "--all"), ("a b", None),
     ("r.git", "x\n"), ("r" * 4001, None), ("r.git", "r" * 401), (1, None)],
)  # fmt: skip
def test_bad_code_sources(repository: object, ref: object) -> None:
    with pytest.raises(ValidationError):
        validate_code_source(repository, ref)


def test_good_code_sources() -> None:
    assert validate_code_source(None, None) == (None, None)
    assert validate_code_source("git@host:team/repo.git", "v1.2") == (
        "git@host:team/repo.git",
        "v1.2",
    )
    assert validate_code_source("/srv/repo.git", None) == ("/srv/repo.git", None)


def teardown_module() -> None:
    for name in [n for n in sys.modules if n.startswith("headway_entrypoint_")]:
        del sys.modules[name]


def test_with_a_code_repository_relative_to_the_checkout_root(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    subprocess.run(["git", "init", "--quiet", str(project)], check=True)
    flow = load_flow(f"{project}/flows/etl.py:etl")
    monkeypatch.chdir(project / "flows")
    spec = build_spec(flow, name="d", code_repository="https://x/r.git")
    assert spec.entrypoint == "flows/etl.py:etl"
    # Without a repository, the working directory is the root, as before.
    assert build_spec(flow, name="d").entrypoint == "etl.py:etl"
