"""The validation boundary, by property (hypothesis), over the Python API.

For every generated input, one of two things is true: the call refuses it
cleanly (a :class:`~headway.exceptions.HeadwayError`, nothing else), or the
store it was written to can still list, inspect and schedule everything
afterwards. Inputs are drawn at the edges of what the store can hold and read
back: integers around 2**31, 2**63 and 2**64; datetimes in years 1 and 9999
with offsets of +-14 h; nan, inf, 5e-324 and 1e308; cron fields at and past
their ends; rrules with COUNT, UNTIL and BYSETPOS; names with every control
character.

It runs on the embedded stores (SQLite and PostgreSQL): the server's own
boundary is the request models, tested over HTTP in test_hostile_inputs.py and
by the schema fuzzer. Examples are bounded and derandomized (repeatable).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headway.cli._deploying import schedule_next
from headway.client.base import Client
from headway.core.deployments import DeploymentSpec
from headway.core.limits import ProcessInfo
from headway.core.models import LogRecord, TaskRunRecord
from headway.core.states import Running, State, StateType
from headway.exceptions import HeadwayError

if TYPE_CHECKING:
    from conftest import Backend

#: Generated inputs per backend: PostgreSQL's round trips make each check dearer there.
EXAMPLES = int(os.environ.get("HEADWAY_PROPERTY_EXAMPLES", "80"))
POSTGRES_EXAMPLES = max(1, EXAMPLES // 3)

INTEGERS = st.sampled_from(
    [b + d for b in (2**31, 2**63, 2**64) for d in (-1, 0, 1)] + [0, -1, -(2**31), -(2**63) - 1]
)
OFFSETS = st.sampled_from([timezone(timedelta(hours=h)) for h in (-14, -13, -1, 0, 1, 13, 14)])
EDGE_TIMES = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 3), timezones=OFFSETS),
    st.datetimes(datetime(9999, 12, 29), datetime(9999, 12, 31, 23, 59, 59), timezones=OFFSETS),
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 2)),  # naive: taken as UTC
)
FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 5e-324, -5e-324, 1e308, -1e308, 0.0])
CRON_FIELDS = st.tuples(
    st.sampled_from(["0", "59", "60", "-1", "*", "*/61"]),
    st.sampled_from(["0", "23", "24", "*"]),
    st.sampled_from(["0", "1", "28", "29", "30", "31", "32", "*", "L"]),
    st.sampled_from(["0", "1", "2", "4", "12", "13", "*"]),
    st.sampled_from(["0", "6", "7", "8", "*"]),
).map(" ".join)
RRULES = st.builds(
    lambda freq, parts: ";".join([f"FREQ={freq}", *parts]),
    st.sampled_from(["YEARLY", "MONTHLY", "WEEKLY"]),
    st.lists(
        st.sampled_from(
            [
                "COUNT=1",
                "COUNT=10000",
                "COUNT=10001",
                "COUNT=1000000000",
                "UNTIL=19000101T000000",
                "UNTIL=99991231T235959",
                "BYSETPOS=1",
                "BYSETPOS=-1",
                "BYSETPOS=366",
                "BYMONTHDAY=29",
                "BYMONTHDAY=31",
                "BYMONTHDAY=-1",
                "BYMONTH=2",
                "BYMONTH=4",
                "INTERVAL=400",
            ]
        ),
        max_size=3,
        unique_by=lambda part: part.split("=")[0],
    ),
) | st.sampled_from(
    [
        "FREQ=SECONDLY;COUNT=1000000000",
        "FREQ=MINUTELY;UNTIL=99991231T235959",
        "FREQ=HOURLY;BYSETPOS=-1",
        "DTSTART:00010101T000000\nRRULE:FREQ=SECONDLY",
        "DTSTART:99991231T235959\nRRULE:FREQ=SECONDLY;COUNT=10",
    ]
)
CONTROL = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]] + ["\u2028", "\u200b"]
NAMES = st.builds(
    lambda prefix, c, suffix: prefix + c + suffix,
    st.sampled_from(["", "a", "name"]),
    st.sampled_from(CONTROL),
    st.sampled_from(["", "b"]),
)


def _new() -> str:
    return uuid.uuid4().hex[:12]


def integer_calls(c: Client, n: int) -> list[Callable[[], object]]:
    run = str(uuid.uuid4())
    return [
        lambda: c.create_flow_run(
            id=str(uuid.uuid4()), name="r", flow_name="f", state=Running(), pid=n
        ),
        lambda: c.register_worker("", f"w-{_new()}", pid=n),
        lambda: c.acquire_slots(["prop"], 1, process=ProcessInfo(n, "h", "node", 1)),
        lambda: c.acquire_slots(["prop"], 1, process=ProcessInfo(1, "h", "node", n)),
        lambda: c.create_limit(f"l-{_new()}", n),
        lambda: c.create_deployment_run("prop/dep", priority=n),
        lambda: c.write_logs([LogRecord(None, None, n, "X", "l", "m", datetime.now(UTC))]),
        lambda: c.record_task_runs(
            [TaskRunRecord(run, None, "t", "k", (), 1.0, (Running(),), n)]
        ),
    ]  # fmt: skip


def time_calls(c: Client, when: datetime) -> list[Callable[[], object]]:
    running = State(StateType.RUNNING, "Running", when)
    return [
        lambda: c.create_flow_run(id=str(uuid.uuid4()), name="r", flow_name="f", state=running),
        lambda: c.write_logs([LogRecord(None, None, 20, "INFO", "l", "m", when)]),
        lambda: c.record_task_runs(
            [TaskRunRecord(str(uuid.uuid4()), None, "t", "k", (), 1.0, (running,), 1)]
        ),
        lambda: c.create_deployment_run("prop/dep", scheduled_time=when),
        lambda: c.apply_deployment(
            DeploymentSpec(
                flow_name="prop",
                name=_new(),
                schedules=({"interval": 3600, "anchor": when.isoformat()},),
            )
        ),
    ]


def float_calls(c: Client, x: float) -> list[Callable[[], object]]:
    return [
        lambda: c.create_flow_run(
            id=str(uuid.uuid4()), name="r", flow_name="f", state=Running(), parameters={"x": [x]}
        ),
        lambda: c.create_limit(f"l-{_new()}", 1, slot_decay_per_second=x),
        lambda: c.apply_deployment(
            DeploymentSpec(flow_name="prop", name=_new(), schedules=({"interval": x},))
        ),
        lambda: c.acquire_slots(["prop"], 1, lease_seconds=x),
        lambda: c.record_task_runs(
            [TaskRunRecord(str(uuid.uuid4()), None, "t", "k", (), x, (Running(),), 1)]
        ),
        lambda: c.create_deployment_run("prop/dep", parameters={"x": x}),
    ]


def schedule_calls(c: Client, schedule: dict[str, Any]) -> list[Callable[[], object]]:
    spec = DeploymentSpec(flow_name="prop", name=_new(), schedules=(schedule,))
    return [lambda: c.apply_deployment(spec)]


def name_calls(c: Client, name: str) -> list[Callable[[], object]]:
    return [
        lambda: c.create_limit(name, 1),
        lambda: c.create_work_pool(name),
        lambda: c.apply_deployment(DeploymentSpec(flow_name="prop", name=name)),
        lambda: c.apply_deployment(DeploymentSpec(flow_name=name, name="d")),
        lambda: c.create_flow_run(id=str(uuid.uuid4()), name=name, flow_name="f", state=Running()),
        lambda: c.create_flow_run(
            id=str(uuid.uuid4()), name="r", flow_name="f", state=Running(), tags=[name]
        ),
        lambda: c.register_worker("", name),
        lambda: c.acquire_slots([name], 1),
    ]


CASES = st.one_of(
    st.tuples(st.just(integer_calls), INTEGERS),
    st.tuples(st.just(time_calls), EDGE_TIMES),
    st.tuples(st.just(float_calls), FLOATS),
    st.tuples(st.just(schedule_calls), CRON_FIELDS.map(lambda c: {"cron": c})),
    st.tuples(st.just(schedule_calls), RRULES.map(lambda r: {"rrule": r})),
    st.tuples(st.just(name_calls), NAMES),
)


def assert_store_usable(client: Client, backend: Backend) -> None:
    """List, inspect and schedule everything: none of it may fail."""
    runs = client.list_flow_runs(limit=10_000)
    for run in runs[:5]:
        client.read_flow_run(run.id, with_task_runs=True)
        client.read_states(run.id)
        client.read_logs(run.id)
    for dep in client.list_deployments():
        client.read_deployment(dep.full_name)
        for schedule in dep.schedules:
            assert not schedule_next(schedule.schedule, datetime.now(UTC)).startswith(
                "cannot be computed"
            ), (dep.full_name, schedule.schedule)
    client.list_limits()
    client.list_workers()
    client.list_work_pools()
    client.read_events(limit=1000)
    client.status()
    client.schedule_runs()
    client.sweep_slots()


def test_every_input_is_refused_cleanly_or_leaves_a_usable_store(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    if backend_name.startswith("server"):
        pytest.skip("the Python API's own boundary: the server's is tested over HTTP")
    client: Client = request.getfixturevalue("client")
    backend: Backend = request.getfixturevalue("backend")
    client.create_limit("prop", 1_000_000)
    client.apply_deployment(DeploymentSpec(flow_name="prop", name="dep"))

    @given(case=CASES)
    @settings(
        max_examples=POSTGRES_EXAMPLES if backend.is_postgres else EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: tuple[Callable[[Client, Any], list[Callable[[], object]]], Any]) -> None:
        make, value = case
        for call in make(client, value):
            try:
                result = call()
            except HeadwayError:
                continue
            grant_id = getattr(result, "lease_id", None)
            if grant_id:
                client.release_slots(grant_id)
        assert_store_usable(client, backend)

    check()
