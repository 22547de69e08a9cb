"""Bad input is refused with a clear message, and nothing in the store changes.

One matrix of bad inputs, sent through the three ways in:

- the Python API (the Client, ``concurrency()``, ``run_deployment()``): a
  :class:`~headway.exceptions.HeadwayError` subclass (a ``ValidationError`` is also
  a ``ValueError``, ``ObjectNotFound`` a ``LookupError``) with a message that
  names what was wrong;
- the command line: one ``Error: ...`` line on stderr, exit code 2, no traceback;
- the HTTP API (server backends): a 4xx answer with the JSON error body
  ``{"detail", "error"}``; also malformed JSON and oversized bodies.

After every single input, a snapshot of every row of every table of the store
(SQLite file or PostgreSQL database) must equal the one taken before the run.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from headway.cli import main as cli_main
from headway.client.base import Client
from headway.concurrency.sync import concurrency, rate_limit
from headway.core.deployments import DeploymentSpec, parameter_schema
from headway.core.states import Running
from headway.deployments.run import run_deployment
from headway.exceptions import HeadwayError, ObjectNotFound, ValidationError

if TYPE_CHECKING:
    from conftest import Backend

HUGE = 10**30
LONG = "x" * 10_000
NUL = "a\x00b"
CONTROL = "a\x1b\nb"
MISSING_RUN = str(uuid.uuid4())
NOT_A_UUID = "not-a-uuid-\x01"

FLOWS = """
from headway.flows import flow


@flow
def fn(x: int, y: str = "a"):
    return x
"""


def _fn(x: int, y: str = "a") -> int:
    """The flow's signature (the deployment stores what it accepts)."""
    return x


# -- the store, row by row -------------------------------------------------------------
class Snapshots:
    """Every row of every table of a backend's store, in a stable order, on demand."""

    def __init__(self, backend: Backend) -> None:
        settings = backend.server.settings if backend.server is not None else backend.settings
        url = settings.effective_database_url
        self._sqlite = url.startswith("sqlite")
        if self._sqlite:
            path = url.split("///", 1)[1]
            # Read-only; each SELECT outside a transaction sees the latest commit.
            self._conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self._tables = (
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        else:
            import psycopg

            dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
            self._conn = psycopg.connect(dsn, autocommit=True)
            self._tables = (
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )

    def take(self) -> dict[str, list[str]]:
        """The store now."""
        tables: dict[str, list[str]] = {}
        for (name,) in self._conn.execute(self._tables).fetchall():
            rows = self._conn.execute(f'SELECT * FROM "{name}"').fetchall()
            tables[name] = sorted(repr(r) for r in rows)
        assert tables, "no tables found: the snapshot would see nothing"
        return tables

    def close(self) -> None:
        self._conn.close()


def changed(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """Names of the tables whose rows differ."""
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


# -- a store with one of everything ---------------------------------------------------
def build_world(client: Client, tmp_path: Path) -> dict[str, str]:
    """A limit ``db`` (2), a pool ``pool``, deployments ``fn/dep`` and ``fn/bare``, a run."""
    flows = tmp_path / "flows.py"
    flows.write_text(FLOWS)
    client.create_limit("db", 2)
    client.create_work_pool("pool")
    client.apply_deployment(
        DeploymentSpec(
            flow_name="fn",
            name="dep",
            entrypoint=f"{flows}:fn",
            parameters={"x": 1},
            parameter_schema=parameter_schema(_fn),
            work_pool="pool",
        )
    )
    # Deployed without a value for the required ``x``: each run must bring one.
    client.apply_deployment(
        DeploymentSpec(
            flow_name="fn",
            name="bare",
            entrypoint=f"{flows}:fn",
            parameter_schema=parameter_schema(_fn),
            work_pool="pool",
        )
    )
    run = client.create_flow_run(id=str(uuid.uuid4()), name="r", flow_name="fn", state=Running())
    return {"entrypoint": f"{flows}:fn", "run_id": run.id}


def spec(**fields: Any) -> DeploymentSpec:
    base: dict[str, Any] = {
        "flow_name": "fn",
        "name": "other",
        "parameters": {"x": 1},
        "parameter_schema": parameter_schema(_fn),
        "work_pool": "pool",
    }
    return DeploymentSpec(**{**base, **fields})


def enter(names: Any, **kw: Any) -> Callable[[], None]:
    def call() -> None:
        with concurrency(names, **kw):
            pass

    return call


def enter_rate(names: Any, **kw: Any) -> Callable[[], None]:
    def call() -> None:
        rate_limit(names, **kw)

    return call


def two_ends(backend_name: str, request: pytest.FixtureRequest) -> tuple[Backend, Client]:
    """The backend and client on embedded SQLite and server-on-PostgreSQL only (skip others)."""
    if backend_name not in ("embedded-sqlite", "server-postgres"):
        pytest.skip("runs on the two ends of the backend matrix")
    return request.getfixturevalue("backend"), request.getfixturevalue("client")


# -- the Python API ---------------------------------------------------------------------
def python_cases(
    client: Client, world: dict[str, str]
) -> list[tuple[str, Callable[[], object], type[HeadwayError], str]]:
    """(label, call, error class, a word the message must contain)."""
    c = client
    return [
        # limits: negative, non-integer, huge (0 is a limit: it admits nothing)
        ("limit -1", lambda: c.create_limit("new", -1), ValidationError, "limit"),
        ("limit 1.5", lambda: c.create_limit("new", 1.5), ValidationError, "limit"),  # type: ignore[arg-type]
        ("limit '3'", lambda: c.create_limit("new", "3"), ValidationError, "limit"),  # type: ignore[arg-type]
        ("limit huge", lambda: c.create_limit("new", HUGE), ValidationError, "limit"),
        ("update -1", lambda: c.update_limit("db", limit=-1), ValidationError, "limit"),
        ("update 2.5", lambda: c.update_limit("db", limit=2.5), ValidationError, "limit"),  # type: ignore[arg-type]
        ("update huge", lambda: c.update_limit("db", limit=HUGE), ValidationError, "limit"),
        (
            "decay -1",
            lambda: c.create_limit("new", 1, slot_decay_per_second=-1),
            ValidationError,
            "decay",
        ),
        (
            "decay nan",
            lambda: c.create_limit("new", 1, slot_decay_per_second=float("nan")),
            ValidationError,
            "decay",
        ),
        (
            "pool limit -1",
            lambda: c.set_work_pool_concurrency_limit("pool", -1),
            ValidationError,
            "limit",
        ),
        (
            "pool limit huge",
            lambda: c.set_work_pool_concurrency_limit("pool", HUGE),
            ValidationError,
            "limit",
        ),
        (
            "deployment limit -1",
            lambda: c.set_deployment_concurrency_limit("fn/dep", -1),
            ValidationError,
            "limit",
        ),
        (
            "deployment limit 1.5",
            lambda: c.set_deployment_concurrency_limit("fn/dep", 1.5),
            ValidationError,
            "limit",
        ),  # type: ignore[arg-type]
        # occupy: 0, negative, above the limit
        ("occupy 0", enter("db", occupy=0), ValidationError, "occupy"),
        ("occupy -1", enter("db", occupy=-1), ValidationError, "occupy"),
        ("occupy 1.5", enter("db", occupy=1.5), ValidationError, "occupy"),
        ("occupy above limit", enter("db", occupy=3), ValidationError, "limit is 2"),
        ("acquire occupy 0", lambda: c.acquire_slots(["db"], 0), ValidationError, "occupy"),
        ("acquire occupy -2", lambda: c.acquire_slots(["db"], -2), ValidationError, "occupy"),
        (
            "acquire occupy 3",
            lambda: c.acquire_slots(["db"], 3, timeout=0),
            ValidationError,
            "limit is 2",
        ),
        ("rate occupy 0", enter_rate("db", occupy=0), ValidationError, "occupy"),
        # names: empty, 10,000 characters, NUL, control characters
        ("limit name ''", lambda: c.create_limit("", 1), ValidationError, "empty"),
        ("limit name long", lambda: c.create_limit(LONG, 1), ValidationError, "characters"),
        ("limit name NUL", lambda: c.create_limit(NUL, 1), ValidationError, "control"),
        ("limit name control", lambda: c.create_limit(CONTROL, 1), ValidationError, "control"),
        ("concurrency name ''", enter(""), ValidationError, "empty"),
        ("concurrency name NUL", enter(NUL), ValidationError, "control"),
        ("concurrency name long", enter(LONG), ValidationError, "characters"),
        ("pool name ''", lambda: c.create_work_pool(""), ValidationError, "empty"),
        ("pool name long", lambda: c.create_work_pool(LONG), ValidationError, "characters"),
        ("pool name NUL", lambda: c.create_work_pool(NUL), ValidationError, "control"),
        ("pool name control", lambda: c.create_work_pool("p\x07"), ValidationError, "control"),
        ("queue name NUL", lambda: c.create_work_queue("pool", NUL), ValidationError, "control"),
        ("deployment name ''", lambda: c.apply_deployment(spec(name="")), ValidationError, "empty"),
        (
            "deployment name long",
            lambda: c.apply_deployment(spec(name=LONG)),
            ValidationError,
            "characters",
        ),
        (
            "deployment name NUL",
            lambda: c.apply_deployment(spec(name=NUL)),
            ValidationError,
            "control",
        ),
        (
            "flow name control",
            lambda: c.apply_deployment(spec(flow_name="f\x1b")),
            ValidationError,
            "control",
        ),
        (
            "run name ''",
            lambda: c.create_flow_run(
                id=str(uuid.uuid4()), name="", flow_name="f", state=Running()
            ),
            ValidationError,
            "name",
        ),
        (
            "run name NUL",
            lambda: c.create_flow_run(
                id=str(uuid.uuid4()), name=NUL, flow_name="f", state=Running()
            ),
            ValidationError,
            "name",
        ),
        ("tag NUL", lambda: c.create_limit("tag:" + NUL, 1), ValidationError, "control"),
        # unknown limit, pool, deployment, run
        ("unknown limit read", lambda: c.read_limit("nope"), ObjectNotFound, "nope"),
        ("unknown limit update", lambda: c.update_limit("nope", limit=2), ObjectNotFound, "nope"),
        ("unknown limit delete", lambda: c.delete_limit("nope"), ObjectNotFound, "nope"),
        ("unknown limit reset", lambda: c.reset_limit("nope"), ObjectNotFound, "nope"),
        ("unknown pool read", lambda: c.read_work_pool("nope"), ObjectNotFound, "nope"),
        (
            "unknown pool limit",
            lambda: c.set_work_pool_concurrency_limit("nope", 1),
            ObjectNotFound,
            "nope",
        ),
        ("unknown pool delete", lambda: c.delete_work_pool("nope"), ObjectNotFound, "nope"),
        ("unknown pool queue", lambda: c.create_work_queue("nope", "q"), ObjectNotFound, "nope"),
        (
            "deployment to unknown pool",
            lambda: c.apply_deployment(spec(work_pool="nope")),
            ObjectNotFound,
            "nope",
        ),
        ("unknown deployment read", lambda: c.read_deployment("fn/nope"), ObjectNotFound, "nope"),
        (
            "unknown deployment run",
            lambda: c.create_deployment_run("fn/nope"),
            ObjectNotFound,
            "nope",
        ),
        (
            "unknown deployment delete",
            lambda: c.delete_deployment("fn/nope"),
            ObjectNotFound,
            "nope",
        ),
        (
            "unknown deployment limit",
            lambda: c.set_deployment_concurrency_limit("fn/nope", 1),
            ObjectNotFound,
            "nope",
        ),
        (
            "run_deployment unknown",
            lambda: run_deployment("fn/nope", timeout=0),
            ObjectNotFound,
            "nope",
        ),
        ("unknown run read", lambda: c.read_flow_run(MISSING_RUN), ObjectNotFound, MISSING_RUN),
        (
            "unknown run state",
            lambda: c.set_flow_run_state(MISSING_RUN, Running()),
            ObjectNotFound,
            MISSING_RUN,
        ),
        ("unknown run cancel", lambda: c.cancel_flow_run(MISSING_RUN), ObjectNotFound, MISSING_RUN),
        ("unknown run explain", lambda: c.explain_run(MISSING_RUN), ObjectNotFound, MISSING_RUN),
        # invalid UUIDs
        ("bad uuid read", lambda: c.read_flow_run(NOT_A_UUID), HeadwayError, "not-a-uuid"),
        (
            "bad uuid state",
            lambda: c.set_flow_run_state(NOT_A_UUID, Running()),
            HeadwayError,
            "not-a-uuid",
        ),
        ("bad uuid cancel", lambda: c.cancel_flow_run("x" * 100), HeadwayError, "run"),
        (
            "bad uuid create",
            lambda: c.create_flow_run(id="x" * 100, name="r", flow_name="f", state=Running()),
            ValidationError,
            "id",
        ),
        # malformed cron and rrule (and interval, timezone)
        (
            "cron 61",
            lambda: c.apply_deployment(spec(schedules=({"cron": "61 * * * *"},))),
            ValidationError,
            "cron",
        ),
        (
            "cron words",
            lambda: c.apply_deployment(spec(schedules=({"cron": "every day"},))),
            ValidationError,
            "cron",
        ),
        (
            "rrule freq",
            lambda: c.apply_deployment(spec(schedules=({"rrule": "FREQ=SOMETIMES"},))),
            ValidationError,
            "rrule",
        ),
        (
            "rrule garbage",
            lambda: c.apply_deployment(spec(schedules=({"rrule": "not a rule"},))),
            ValidationError,
            "rrule",
        ),
        (
            "interval -5",
            lambda: c.apply_deployment(spec(schedules=({"interval": -5},))),
            ValidationError,
            "interval",
        ),
        (
            "timezone",
            lambda: c.apply_deployment(
                spec(schedules=({"cron": "* * * * *", "timezone": "Mars/Olympus"},))
            ),
            ValidationError,
            "Mars",
        ),
        # parameters that do not match the flow's signature
        (
            "unknown parameter",
            lambda: c.apply_deployment(spec(parameters={"x": 1, "z": 2})),
            ValidationError,
            "'z'",
        ),
        (
            "missing parameter",
            lambda: c.create_deployment_run("fn/bare"),
            ValidationError,
            "'x'",
        ),
        (
            "run unknown parameter",
            lambda: c.create_deployment_run("fn/dep", parameters={"z": 1}),
            ValidationError,
            "'z'",
        ),
        (
            "run_deployment unknown parameter",
            lambda: run_deployment("fn/dep", {"z": 1}, timeout=0),
            ValidationError,
            "'z'",
        ),
        (
            "parameters not JSON",
            lambda: c.create_deployment_run("fn/dep", parameters={"x": object()}),
            ValidationError,
            "JSON",
        ),
    ]


def test_python_api_refuses_and_changes_nothing(
    client: Client, backend: Backend, tmp_path: Path
) -> None:
    cases = python_cases(client, build_world(client, tmp_path))

    def attempt(call: Callable[[], object], error: type[HeadwayError], word: str) -> str | None:
        try:
            call()
        except HeadwayError as exc:
            if not isinstance(exc, error):
                return f"{type(exc).__name__} ({exc}), wanted {error.__name__}"
            if word.lower() not in str(exc).lower():
                return f"message {str(exc)!r} does not mention {word!r}"
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc} (not a HeadwayError)"
        return "accepted"

    tried = [(label, lambda c=c, e=e, w=w: attempt(c, e, w)) for label, c, e, w in cases]
    assert_refused_without_change(backend, tried)
    assert len(cases) >= 70


# -- the command line -----------------------------------------------------------------------
def cli_cases(world: dict[str, str]) -> list[list[str]]:
    ep = world["entrypoint"]
    run_id = world["run_id"]
    deploy = ["deploy", ep, "--name", "other", "--pool", "pool", "--param", "x=1"]
    return [
        # limits
        ["gcl", "create", "new", "--limit", "-1"],
        ["gcl", "create", "new", "--limit", "1.5"],
        ["gcl", "create", "new", "--limit", "abc"],
        ["gcl", "create", "new", "--limit", str(HUGE)],
        ["gcl", "update", "db", "--limit", "-3"],
        ["gcl", "update", "db", "--limit", str(HUGE)],
        ["gcl", "create", "new", "--limit", "1", "--slot-decay-per-second", "-1"],
        ["gcl", "create", "new", "--limit", "1", "--slot-decay-per-second", "nan"],
        ["concurrency-limit", "create", "io", "-1"],
        ["work-pool", "set-concurrency-limit", "pool", "-1"],
        ["work-pool", "set-concurrency-limit", "pool", "2.5"],
        ["work-pool", "set-concurrency-limit", "pool", str(HUGE)],
        ["deployment", "set-concurrency-limit", "fn/dep", "-1"],
        ["deployment", "set-concurrency-limit", "fn/dep", "0"],
        [*deploy, "--concurrency-limit", "-1"],
        # names
        ["gcl", "create", "", "--limit", "1"],
        ["gcl", "create", LONG, "--limit", "1"],
        ["gcl", "create", NUL, "--limit", "1"],
        ["gcl", "create", CONTROL, "--limit", "1"],
        ["concurrency-limit", "create", "", "1"],
        ["concurrency-limit", "create", NUL, "1"],
        ["work-pool", "create", ""],
        ["work-pool", "create", LONG],
        ["work-pool", "create", NUL],
        ["work-queue", "create", "q\x07", "--pool", "pool"],
        ["deploy", ep, "--name", "", "--pool", "pool", "--param", "x=1"],
        ["deploy", ep, "--name", LONG, "--pool", "pool", "--param", "x=1"],
        ["deploy", ep, "--name", NUL, "--pool", "pool", "--param", "x=1"],
        # unknown limit, pool, deployment, run
        ["gcl", "inspect", "nope"],
        ["gcl", "update", "nope", "--limit", "2"],
        ["gcl", "delete", "nope", "--yes"],
        ["concurrency-limit", "inspect", "nope"],
        ["concurrency-limit", "reset", "nope"],
        ["work-pool", "inspect", "nope"],
        ["work-pool", "set-concurrency-limit", "nope", "2"],
        ["work-pool", "delete", "nope"],
        ["work-queue", "create", "q", "--pool", "nope"],
        ["deploy", ep, "--name", "other", "--pool", "nope", "--param", "x=1"],
        ["deployment", "inspect", "fn/nope"],
        ["deployment", "run", "fn/nope"],
        ["deployment", "delete", "fn/nope"],
        ["deployment", "inspect", "no-slash"],
        ["flow-run", "inspect", MISSING_RUN],
        ["flow-run", "logs", MISSING_RUN],
        ["why", MISSING_RUN],
        # invalid UUIDs
        ["flow-run", "inspect", "not-a-uuid"],
        ["flow-run", "inspect", "x" * 100],
        ["why", NOT_A_UUID],
        # malformed cron, rrule, interval
        [*deploy, "--cron", "61 * * * *"],
        [*deploy, "--cron", "every day"],
        [*deploy, "--rrule", "FREQ=SOMETIMES"],
        [*deploy, "--rrule", "not a rule"],
        [*deploy, "--interval", "-5"],
        [*deploy, "--interval", "soon"],
        [*deploy, "--cron", "* * * * *", "--timezone", "Mars/Olympus"],
        # parameters that do not match the flow's signature
        ["deploy", ep, "--name", "other", "--pool", "pool", "--param", "x=1", "--param", "z=2"],
        ["deployment", "run", "fn/bare"],
        ["deployment", "run", "fn/dep", "--param", "z=1"],
        ["deployment", "run", "fn/dep", "--param", "novalue"],
        # run-state and other arguments
        ["deployment", "run", "fn/dep", "--scheduled-time", "yesterday-ish"],
        ["flow-run", "ls", "--state", "NOT_A_STATE"],
        ["events", "--since", "last tuesday"],
        ["deploy", "no-colon-here", "--name", "other", "--pool", "pool"],
        [
            "deploy",
            str(Path(ep.split(":")[0]).with_name("missing.py")) + ":fn",
            "--name",
            "o",
            "--pool",
            "pool",
        ],
        ["flow-run", "inspect", run_id, "-o", "xml"],
    ]


@pytest.mark.slow
def test_cli_refuses_with_one_line_exit_2_and_changes_nothing(
    backend_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend, client = two_ends(backend_name, request)
    cases = cli_cases(build_world(client, tmp_path))

    def attempt(args: list[str]) -> str | None:
        code = cli_main(list(args))
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        if code != 2:
            return f"exit {code} ({err.strip()[:200]})"
        if len(lines) != 1 or not lines[0].startswith("Error: "):
            return f"stderr is not one 'Error:' line: {err[:300]!r}"
        if "Traceback" in out + err:
            return "traceback"
        return None

    tried = [
        (" ".join(a if len(a) < 40 else a[:20] + "..." for a in args), lambda a=args: attempt(a))
        for args in cases
    ]
    assert_refused_without_change(backend, tried)
    assert len(cases) >= 60


# -- the HTTP API ---------------------------------------------------------------------------
#: A body that is not JSON: 400 (not UTF-8) or 422 (a JSON decode error, located).
MALFORMED = (400, 422)


def http_cases(world: dict[str, str]) -> list[tuple[str, str, Any, int | tuple[int, ...]]]:
    """(method, path, JSON body or raw bytes, expected status or statuses)."""
    run_id = world["run_id"]
    limit = {"name": "new", "limit": 1}
    flow_run = {
        "id": str(uuid.uuid4()),
        "name": "r",
        "flow_name": "f",
        "state": {"type": "RUNNING"},
    }
    dep = {"flow_name": "fn", "name": "other", "parameters": {"x": 1},
           "parameter_schema": parameter_schema(_fn), "work_pool": "pool"}  # fmt: skip
    too_big = b'{"name": "' + b"y" * (1024 * 1024 + 10) + b'", "limit": 1}'
    return [
        # malformed JSON and oversized bodies
        ("POST", "/limits", b'{"name": "new", "limit": ', MALFORMED),
        ("POST", "/limits", b"\xff\xfe not json", MALFORMED),
        ("POST", "/limits", b"[1, 2, 3]", 422),
        ("POST", "/limits", b'"a string"', 422),
        ("POST", "/flow_runs", b"{" * 10_000, MALFORMED),
        ("POST", "/limits", too_big, 413),
        ("POST", "/slots/acquire", b'{"names": ["db"], "slots": 1,,}', MALFORMED),
        # limits
        ("POST", "/limits", {**limit, "limit": -1}, 422),
        ("POST", "/limits", {**limit, "limit": 1.5}, 422),
        ("POST", "/limits", {**limit, "limit": "many"}, 422),
        ("POST", "/limits", {**limit, "limit": HUGE}, 422),
        ("POST", "/limits", {**limit, "limit": None}, 422),
        ("POST", "/limits", {"name": "new"}, 422),
        ("POST", "/limits", {**limit, "colour": "red"}, 422),
        ("PATCH", "/limits/db", {"limit": -1}, 422),
        ("PATCH", "/limits/db", {"limit": HUGE}, 422),
        ("PUT", "/work_pools/pool/concurrency_limit", {"limit": -1}, 422),
        ("PUT", "/deployments/fn/dep/concurrency_limit", {"limit": 0}, 422),
        ("PUT", "/deployments/fn/dep/concurrency_limit", {"limit": -1}, 422),
        # occupy
        ("POST", "/slots/acquire", {"names": ["db"], "slots": 0}, 422),
        ("POST", "/slots/acquire", {"names": ["db"], "slots": -1}, 422),
        ("POST", "/slots/acquire", {"names": ["db"], "slots": 3}, 422),
        ("POST", "/slots/acquire", {"names": ["db"], "slots": 1.5}, 422),
        ("POST", "/slots/acquire", {"names": [], "slots": 1}, 422),
        ("POST", "/slots/acquire", {"names": ["db"], "slots": 1, "timeout": -1}, 422),
        # names
        ("POST", "/limits", {**limit, "name": ""}, 422),
        ("POST", "/limits", {**limit, "name": LONG}, 422),
        ("POST", "/limits", {**limit, "name": NUL}, 422),
        ("POST", "/limits", {**limit, "name": CONTROL}, 422),
        ("POST", "/slots/acquire", {"names": [NUL], "slots": 1}, 422),
        ("POST", "/work_pools", {"name": ""}, 422),
        ("POST", "/work_pools", {"name": LONG}, 422),
        ("POST", "/work_pools", {"name": NUL}, 422),
        ("POST", "/deployments", {**dep, "name": NUL}, 422),
        ("POST", "/flow_runs", {**flow_run, "name": ""}, 422),
        ("POST", "/flow_runs", {**flow_run, "name": NUL}, 422),
        # unknown limit, pool, deployment, run
        ("GET", "/limits/nope", None, 404),
        ("PATCH", "/limits/nope", {"limit": 2}, 404),
        ("DELETE", "/limits/nope", None, 404),
        ("GET", "/work_pools/nope", None, 404),
        ("DELETE", "/work_pools/nope", None, 404),
        ("POST", "/work_pools/nope/queues", {"name": "q"}, 404),
        ("POST", "/deployments", {**dep, "work_pool": "nope"}, 404),
        ("GET", "/deployments/fn/nope", None, 404),
        ("POST", "/deployments/fn/nope/runs", {}, 404),
        ("DELETE", "/deployments/fn/nope", None, 404),
        ("GET", f"/flow_runs/{MISSING_RUN}", None, 404),
        ("POST", f"/flow_runs/{MISSING_RUN}/state", {"state": {"type": "RUNNING"}}, 404),
        ("POST", f"/flow_runs/{MISSING_RUN}/cancel", {}, 404),
        ("GET", f"/explain/runs/{MISSING_RUN}", None, 404),
        # invalid UUIDs
        ("GET", "/flow_runs/not-a-uuid", None, 404),
        ("GET", "/flow_runs/" + "x" * 100, None, 422),
        ("POST", "/flow_runs", {**flow_run, "id": "x" * 100}, 422),
        ("POST", "/flow_runs/" + "x" * 100 + "/state", {"state": {"type": "RUNNING"}}, 422),
        (
            "POST",
            "/task_runs/batch",
            {
                "records": [
                    {"id": "t\x00", "task_key": "k", "name": "n", "created": 1.0, "states": []}
                ]
            },
            422,
        ),
        # malformed cron and rrule
        ("POST", "/deployments", {**dep, "schedules": [{"cron": "61 * * * *"}]}, 422),
        ("POST", "/deployments", {**dep, "schedules": [{"rrule": "FREQ=SOMETIMES"}]}, 422),
        ("POST", "/deployments", {**dep, "schedules": [{"interval": -5}]}, 422),
        ("POST", "/deployments", {**dep, "schedules": ["not a mapping"]}, 422),
        # parameters that do not match the flow's signature
        ("POST", "/deployments", {**dep, "parameters": {"x": 1, "z": 2}}, 422),
        ("POST", "/deployments/fn/bare/runs", {}, 422),
        ("POST", "/deployments/fn/dep/runs", {"parameters": {"z": 1}}, 422),
        ("POST", "/deployments/fn/dep/runs", {"parameters": "x=1"}, 422),
        # state machine and run fields
        ("POST", f"/flow_runs/{run_id}/state", {"state": {"type": "NOPE"}}, 422),
        ("POST", "/flow_runs", {**flow_run, "state": {"type": "COMPLETED"}, "id": run_id}, 409),
    ]


def test_http_api_refuses_with_4xx_json_and_changes_nothing(
    server_backend: Backend, tmp_path: Path
) -> None:
    backend = server_backend
    assert backend.api_url is not None
    cases = http_cases(build_world(backend.client, tmp_path))
    headers = {"Authorization": f"Bearer {backend.env['HEADWAY_API_KEY']}"}
    http = httpx.Client(base_url=backend.api_url + "/api/v1", headers=headers, timeout=30)

    def attempt(method: str, path: str, body: Any, status: int | tuple[int, ...]) -> str | None:
        if isinstance(body, bytes):
            json_type = {"Content-Type": "application/json"}
            answer = http.request(method, path, content=body, headers=json_type)
        else:
            answer = http.request(method, path, json=body)
        try:
            payload = answer.json()
        except ValueError:
            payload = None
        if answer.status_code not in (status if isinstance(status, tuple) else (status,)):
            return f"{answer.status_code} {answer.text[:200]}, wanted {status}"
        if not isinstance(payload, dict) or set(payload) != {"detail", "error"}:
            return f"body is not the JSON error shape: {answer.text[:200]}"
        if not payload["detail"] or "Traceback" in answer.text:
            return f"unclear message {payload['detail']!r}"
        return None

    tried = [
        (f"{m} {p[:60]} {str(b)[:60]!r}", lambda m=m, p=p, b=b, st=st: attempt(m, p, b, st))
        for m, p, b, st in cases
    ]
    with http:
        assert_refused_without_change(backend, tried)
    assert len(cases) >= 60


def assert_refused_without_change(
    backend: Backend, tried: list[tuple[str, Callable[[], str | None]]]
) -> None:
    """Run each attempt; collect its problem, and any change of the store it made."""
    snapshots = Snapshots(backend)
    problems: list[str] = []
    try:
        before = snapshots.take()
        for label, attempt in tried:
            problem = attempt()
            if problem:
                problems.append(f"{label}: {problem}")
            after = snapshots.take()
            if after != before:
                problems.append(f"{label}: changed {changed(before, after)}")
                before = after
    finally:
        snapshots.close()
    assert not problems, f"{len(problems)} of {len(tried)} inputs:\n" + "\n".join(problems)


def test_snapshots_see_a_change(backend_name: str, request: pytest.FixtureRequest) -> None:
    """The snapshot is not blind: one accepted call shows in it."""
    backend, client = two_ends(backend_name, request)
    client.list_limits()  # the store exists
    snapshots = Snapshots(backend)
    try:
        before = snapshots.take()
        client.create_limit("seen", 1)
        assert "limits" in changed(before, snapshots.take())
    finally:
        snapshots.close()


def test_nul_in_free_text_is_stored_not_a_failed_write(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    """A log line or a state message carrying NUL (PostgreSQL text cannot) is kept."""
    if not backend_name.endswith("postgres"):
        pytest.skip("SQLite text holds NUL as it is")
    client: Client = request.getfixturevalue("client")
    from datetime import UTC, datetime

    from headway.core.models import LogRecord
    from headway.core.states import Completed

    run_id = str(uuid.uuid4())
    client.create_flow_run(
        id=run_id, name="r", flow_name="f", state=Running(message="starting\x00now")
    )
    line = LogRecord(run_id, None, 20, "INFO", "user", "bin\x00ary", datetime.now(UTC))
    client.write_logs([line])
    done = client.set_flow_run_state(run_id, Completed(message="done\x00"))
    assert done.state.type.value == "COMPLETED"
    [(_, stored)] = client.read_logs(run_id)
    assert stored.message in ("bin\x00ary", "bin\ufffdary")
    assert [s.type.value for s in client.read_states(run_id)] == ["RUNNING", "COMPLETED"]
