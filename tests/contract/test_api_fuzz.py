"""API fuzzing: schemathesis against the server's own OpenAPI document.

Every operation of the spec is called with generated requests, valid ones and
invalid ones (derandomized hypothesis: a run is repeatable). Each answer must
not be a 5xx, must use a status the spec declares, must have the declared
content type, and its JSON must match the declared response schema. The server
is a real one on a loopback port, with an API key, on a SQLite store of its own.

Requests that would wait (an acquire on a full limit, a worker's claim) are cut
to a fraction of a second so the run stays short. The longer run, with
schemathesis' coverage phase (boundary and wrong-type values of every field) and
on PostgreSQL too, is ``benchmarks/bench_reliability_fuzz.py``.

schemathesis' pytest plugin is not loaded (``-p no:schemathesis`` in
pyproject.toml: it would cost every pytest run a second); the operations are
parametrized here and driven by hypothesis directly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402
from schemathesis.specs.openapi import checks as oa_checks  # noqa: E402

from headway.server.app import create_app  # noqa: E402
from headway.server.runner import ServerThread  # noqa: E402
from headway.settings import get_settings  # noqa: E402

KEY = "fuzz-" + secrets.token_hex(8)
#: Generated requests per operation, half valid and half invalid.
EXAMPLES = int(os.environ.get("HEADWAY_FUZZ_EXAMPLES", "8"))
#: Where to add the number of requests sent (read by the benchmark).
COUNT_FILE = os.environ.get("HEADWAY_FUZZ_COUNT_FILE")
#: The server's store (default: SQLite in a temp dir); the benchmark also fuzzes PostgreSQL.
DATABASE_URL = os.environ.get("HEADWAY_FUZZ_DATABASE_URL")
#: Longest a generated request may ask the server to hold it (acquire, claim).
MAX_WAIT = 0.1

SPEC = create_app(get_settings({"HEADWAY_HOME": "/nonexistent"})).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]

CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
]
sent = 0


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    env = {"HEADWAY_HOME": str(home), "HEADWAY_API_KEY": KEY, "HEADWAY_WAITER_TTL_SECONDS": "5"}
    if DATABASE_URL:
        env["HEADWAY_DATABASE_URL"] = DATABASE_URL
    server_settings = get_settings(env)
    with ServerThread(server_settings) as server:
        yield server
    if COUNT_FILE:
        with open(COUNT_FILE, "a") as out:
            out.write(f"{sent}\n")


def _bounded(body: Any) -> Any:
    """The body with any wait it asks for cut to :data:`MAX_WAIT` seconds."""
    if isinstance(body, dict):
        for field in ("timeout", "wait"):
            value = body.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_WAIT:
                body[field] = MAX_WAIT
    return body


def test_the_spec_has_every_operation() -> None:
    assert len(OPERATIONS) >= 50
    assert {op.label for op in OPERATIONS} >= {
        "POST /api/v1/slots/acquire",
        "POST /api/v1/limits",
        "POST /api/v1/flow_runs",
        "POST /api/v1/deployments",
        "POST /api/v1/workers/{worker_id}/claim",
    }


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_error_and_answers_match_the_spec(
    operation: Any, fuzz_server: ServerThread
) -> None:
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    headers = {"Authorization": f"Bearer {KEY}"}

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        global sent
        case.body = _bounded(case.body)
        sent += 1
        case.call_and_validate(base_url=fuzz_server.url, headers=headers, checks=CHECKS, timeout=30)

    fuzz()
