"""``headway.tags(...)`` and ``task_run_name`` / ``flow_run_name``, as in Prefect.

Tags given by ``with tags(...)`` add to a task's own and count for its tag
concurrency limits; run names are format strings over the run's arguments or
callables returning the name.
"""

from __future__ import annotations

from typing import Any

import pytest

from headway import flow, tags, task
from headway.client.base import get_client
from headway.context import get_flow_run_context


def _flow_run_id() -> str:
    ctx = get_flow_run_context()
    assert ctx is not None
    return ctx.flow_run_id


def task_run_tags(flow_run_id: str, name: str) -> set[str]:
    (run,) = [t for t in get_client().read_task_runs(flow_run_id) if t.name == name]
    return set(run.tags)


@task
def plain() -> None:
    pass


@task(tags={"a", "b"})
def tagged() -> None:
    pass


def test_task_run_tags_added_at_submission_and_at_call() -> None:
    """Prefect: ``TestTaskRunTags.test_task_run_tags_added_at_submission``,
    ``test_task_run_tags_added_at_run`` and ``test_task_run_tags_added_at_call``
    in tests/test_tasks.py."""

    @flow
    def my_flow() -> str:
        with tags("a", "b"):
            plain.submit().wait()
            plain()
        return _flow_run_id()

    run_id = my_flow()
    assert task_run_tags(run_id, "plain-0") == {"a", "b"}
    assert task_run_tags(run_id, "plain-1") == {"a", "b"}


def test_task_run_tags_include_tags_on_the_task_object() -> None:
    """Prefect: ``test_task_run_tags_include_tags_on_task_object`` in tests/test_tasks.py."""

    @flow
    def my_flow() -> str:
        with tags("c", "d"):
            tagged()
        return _flow_run_id()

    assert task_run_tags(my_flow(), "tagged-0") == {"a", "b", "c", "d"}


def test_task_run_tags_include_flow_run_tags_and_respect_nesting() -> None:
    """Prefect: ``test_task_run_tags_include_flow_run_tags`` and
    ``test_task_run_tags_respects_nesting`` in tests/test_tasks.py."""

    @flow
    def my_flow() -> str:
        with tags("c"):
            with tags("d") as current:
                assert current == {"a", "b", "c", "d"}
                plain()
        return _flow_run_id()

    with tags("a", "b"):
        run_id = my_flow()
    assert task_run_tags(run_id, "plain-0") == {"a", "b", "c", "d"}


def test_task_run_tags_not_added_outside_the_block() -> None:
    """Prefect: ``test_task_run_tags_not_added_outside_context`` in tests/test_tasks.py."""

    @flow
    def my_flow() -> str:
        with tags("a", "b"):
            plain()
        plain()
        return _flow_run_id()

    assert task_run_tags(my_flow(), "plain-1") == set()


def test_flow_run_tags_added_at_call_and_to_subflows() -> None:
    """Prefect: ``TestFlowRunTags.test_flow_run_tags_added_at_call`` and
    ``test_flow_run_tags_added_to_subflows`` in tests/test_flows.py."""

    @flow
    def child() -> str:
        return _flow_run_id()

    @flow
    def parent() -> tuple[str, str]:
        with tags("c", "d"):
            return _flow_run_id(), child()

    with tags("a", "b"):
        parent_id, child_id = parent()
    client = get_client()
    assert set(client.read_flow_run(parent_id).tags) == {"a", "b"}
    assert set(client.read_flow_run(child_id).tags) == {"a", "b", "c", "d"}


def test_tags_from_the_block_count_for_tag_concurrency_limits() -> None:
    """Prefect: ``test_task_run_tags_added_at_call`` in tests/test_tasks.py, with
    Prefect's tag limits (tests/server/orchestration/test_core_policy.py,
    ``TestTaskConcurrencyLimits``): a tag a run gets from ``tags()`` is limited like
    one written on the task."""
    client = get_client()
    client.create_limit("tag:db", 1)
    held: list[list[str]] = []

    @task
    def look() -> None:
        holders = client.inspect_limit("tag:db").holders
        held.append([h.holder.kind for h in holders])

    @flow
    def my_flow() -> None:
        with tags("db"):
            look()
        look()

    my_flow()
    assert held == [["task_run"], []]
    assert client.read_limit("tag:db").active_slots == 0


def test_tags_must_be_non_empty_strings() -> None:
    """Prefect: ``tags(*new_tags: str)`` in src/prefect/context.py; headway refuses
    what cannot be a tag at once (a ``ValueError``)."""
    with pytest.raises(ValueError, match="non-empty strings"):
        with tags(""):
            pass


def test_task_run_name_is_set() -> None:
    """Prefect: ``test_task_run_name_is_set`` and
    ``test_task_run_name_is_set_with_kwargs_including_defaults`` in tests/test_tasks.py."""

    @task(task_run_name="fixed-name")
    def fixed(name: str) -> str:
        return name

    @task(task_run_name="{name}-wuz-{where}")
    def formatted(name: str, where: str = "here") -> str:
        return name

    @flow
    def my_flow(name: str) -> str:
        fixed(name)
        formatted.submit(name).wait()
        return _flow_run_id()

    names = {t.name for t in get_client().read_task_runs(my_flow(name="chris"))}
    assert names == {"fixed-name", "chris-wuz-here"}


def test_task_run_name_is_set_with_a_function() -> None:
    """Prefect: ``test_task_run_name_is_set_with_function`` and
    ``test_sets_run_name_once`` / ``test_sets_run_name_once_per_call`` in tests/test_tasks.py:
    the callable is called once per call, not once per attempt."""
    calls: list[int] = []

    def generate() -> str:
        calls.append(1)
        return "is-this-a-bird"

    attempts: list[int] = []

    @task(task_run_name=generate, retries=2)
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("again")

    @flow
    def my_flow() -> str:
        flaky()
        return _flow_run_id()

    run_id = my_flow()
    assert [t.name for t in get_client().read_task_runs(run_id)] == ["is-this-a-bird"]
    assert (len(calls), len(attempts)) == (1, 3)


def test_task_run_name_function_may_take_the_parameters() -> None:
    """Prefect: ``resolve_custom_task_run_name`` in src/prefect/_internal/engine.py passes
    ``parameters=`` to a callable that accepts it (what
    ``test_task_run_name_is_set_with_function_using_runtime_context`` in tests/test_tasks.py
    reads from the run context instead)."""

    def named(parameters: dict[str, Any]) -> str:
        return f"{parameters['name']}-{parameters['where']}"

    @task(task_run_name=named)
    def go(name: str, where: str = "there") -> None:
        pass

    @flow
    def my_flow() -> str:
        go("x")
        return _flow_run_id()

    assert [t.name for t in get_client().read_task_runs(my_flow())] == ["x-there"]


def test_task_run_name_function_not_returning_a_string() -> None:
    """Prefect: ``test_task_run_name_is_set_with_function_not_returning_string``
    in tests/test_tasks.py."""

    def generate() -> None:
        return None

    @task(task_run_name=generate)  # type: ignore[arg-type]
    def go() -> None:
        pass

    @flow
    def my_flow() -> None:
        go()

    with pytest.raises(TypeError, match="for 'task_run_name' returned type NoneType"):
        my_flow()


def test_invalid_run_name_option() -> None:
    """Prefect: ``test_invalid_run_name`` and ``test_invalid_runtime_run_name``
    in tests/test_tasks.py, and ``test_invalid_run_name`` in tests/test_flows.py."""
    with pytest.raises(TypeError, match="Expected string or callable for 'task_run_name'"):
        task(task_run_name=42)(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="Expected string or callable for 'flow_run_name'"):
        flow(flow_run_name=42)(lambda: None)  # type: ignore[call-overload]


def test_with_options_sets_the_run_name() -> None:
    """Prefect: ``test_run_name_from_options`` in tests/test_tasks.py; ``with_options``
    carries ``flow_run_name`` too (``Flow.with_options`` in src/prefect/flows.py)."""

    @task(task_run_name="first_name")
    def go() -> None:
        pass

    renamed = go.with_options(task_run_name=lambda: "second_name")
    assert renamed.task_run_name() == "second_name"  # type: ignore[operator]
    assert go.task_run_name == "first_name"

    @flow(flow_run_name="one")
    def f() -> None:
        pass

    assert f.with_options(flow_run_name="two").flow_run_name == "two"


def test_flow_run_name_is_set() -> None:
    """Prefect: ``TestFlowRunName.test_sets_run_name_when_provided``,
    ``test_sets_run_name_with_params_including_defaults`` and
    ``test_sets_run_name_with_function`` in tests/test_flows.py."""

    @flow(flow_run_name="{name}-wuz-{where}")
    def formatted(name: str, where: str = "here") -> str:
        return _flow_run_id()

    @flow(flow_run_name=lambda: "from-a-function")
    def from_function() -> str:
        return _flow_run_id()

    client = get_client()
    assert client.read_flow_run(formatted("chris")).name == "chris-wuz-here"
    assert client.read_flow_run(from_function()).name == "from-a-function"
