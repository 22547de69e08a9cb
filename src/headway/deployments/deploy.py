"""``flow.deploy()``: register a deployment for the workers of a pool.

Also home of :func:`build_spec`, which ``serve()``, ``deploy()`` and ``headway
deploy`` share: it turns a flow and keyword options into a validated
:class:`~headway.core.deployments.DeploymentSpec`, with the entrypoint a worker
will import and the flow's parameter schema that every run's parameters are
checked against.

The entrypoint is stored relative to the project root (``flows/etl.py:etl``):
the directory the deploying process runs in, unless given. A worker on
another machine resolves it against its own working directory, or against its
checkout of the deployment's code repository. A flow defined outside the
project root keeps an absolute path, which runs only where that path exists.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from headway.client.base import Client, get_client
from headway.core.deployments import DeploymentSpec, parameter_schema
from headway.core.models import Deployment
from headway.core.schedules import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    schedule_to_dict,
    to_schedule,
)
from headway.core.schedules import (
    interval as make_interval,
)
from headway.deployments.config import ConcurrencyLimitConfig
from headway.exceptions import ValidationError
from headway.flows import Flow

ScheduleLike = CronSchedule | IntervalSchedule | RRuleSchedule | Mapping[str, Any] | str


def relative_to_root(path: Path, project_root: str | Path | None = None) -> str | None:
    """``path`` relative to the project root (default: the working directory), POSIX style.

    None when the file is not under the root.
    """
    root = Path(project_root if project_root is not None else Path.cwd()).expanduser().resolve()
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return None


def git_toplevel(directory: str | Path) -> Path | None:
    """The root of the git work tree ``directory`` is in, or None (not in one, or no git)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    top = done.stdout.strip()
    return Path(top) if done.returncode == 0 and top else None


def entrypoint_of(flow: Any, project_root: str | Path | None = None) -> str:
    """``path/file.py:attribute`` where a worker finds ``flow`` again.

    The path is relative to ``project_root`` (default: the working directory),
    or absolute when the flow's file lies outside it.
    """
    fn = getattr(flow, "fn", flow)
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        source = None
    if not source:
        raise ValidationError(
            f"cannot find the file that defines {getattr(flow, 'name', fn)!r}; deploy a flow"
            " defined in a .py file"
        )
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    attribute = None
    if module is not None:
        for key, value in vars(module).items():
            if value is flow:
                attribute = key
                break
    if attribute is None:
        attribute = getattr(fn, "__name__", None)
    if not attribute or not str(attribute).isidentifier() or attribute == "<lambda>":
        raise ValidationError(f"cannot name {flow!r} in its module; define it at module level")
    path = Path(source).resolve()
    return f"{relative_to_root(path, project_root) or path}:{attribute}"


def schedules_from(
    *,
    cron: str | None = None,
    interval: float | timedelta | str | None = None,
    anchor_date: datetime | str | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    schedules: Iterable[ScheduleLike] | None = None,
) -> tuple[dict[str, Any], ...]:
    """The stored form of the schedules given as keyword options (validated)."""
    out: list[dict[str, Any]] = []
    tz = timezone or "UTC"
    if cron is not None:
        out.append(schedule_to_dict(to_schedule(cron, tz)))
    if interval is not None:
        out.append(schedule_to_dict(make_interval(interval, anchor_date, tz)))
    if rrule is not None:
        out.append(schedule_to_dict(to_schedule({"rrule": rrule, "timezone": tz})))
    for item in schedules or ():
        out.append(schedule_to_dict(to_schedule(item, timezone)))
    return tuple(out)


def build_spec(
    flow: Any,
    *,
    name: str,
    work_pool_name: str | None = None,
    work_queue_name: str | None = None,
    entrypoint: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    concurrency_limit: int | ConcurrencyLimitConfig | None = None,
    collision_strategy: str | None = None,
    concurrency_key: str | None = None,
    tags: Iterable[str] = (),
    paused: bool = False,
    description: str | None = None,
    cron: str | None = None,
    interval: float | timedelta | str | None = None,
    anchor_date: datetime | str | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    schedules: Iterable[ScheduleLike] | None = None,
    project_root: str | Path | None = None,
    code_repository: str | None = None,
    code_ref: str | None = None,
) -> DeploymentSpec:
    """A validated deployment spec for ``flow`` (a Flow, or a plain function).

    ``project_root`` is what the entrypoint is made relative to (default: the
    working directory; with a ``code_repository``, the root of the git work
    tree the working directory is in); ``code_repository`` and ``code_ref``
    name a git repository workers check out before each run, whose root is the
    project root.
    """
    if not isinstance(flow, Flow):
        if not callable(flow):
            raise ValidationError(f"cannot deploy {flow!r}: not a flow")
        flow = Flow(flow)
    if isinstance(tags, str):
        tags = [tags]
    limit: int | None
    strategy = collision_strategy or "ENQUEUE"
    key = concurrency_key
    if isinstance(concurrency_limit, ConcurrencyLimitConfig):
        limit = concurrency_limit.limit
        strategy = collision_strategy or concurrency_limit.collision_strategy
        key = concurrency_key or concurrency_limit.concurrency_key
    elif concurrency_limit is None or isinstance(concurrency_limit, int):
        limit = concurrency_limit
        if limit is None and (collision_strategy or concurrency_key):
            raise ValidationError(
                "a collision strategy or concurrency key needs a concurrency limit"
            )
    else:
        raise ValidationError(
            "concurrency_limit must be an int or a ConcurrencyLimitConfig,"
            f" got {type(concurrency_limit).__name__}"
        )
    return DeploymentSpec(
        flow_name=flow.name,
        name=name,
        entrypoint=entrypoint
        or entrypoint_of(
            flow,
            project_root
            if project_root is not None or code_repository is None
            else git_toplevel(Path.cwd()),
        ),
        parameters=dict(parameters or {}),
        parameter_schema=parameter_schema(flow.fn),
        tags=tuple(str(t) for t in tags),
        work_pool=work_pool_name,
        work_queue=work_queue_name,
        paused=paused,
        schedules=schedules_from(
            cron=cron,
            interval=interval,
            anchor_date=anchor_date,
            rrule=rrule,
            timezone=timezone,
            schedules=schedules,
        ),
        concurrency_limit=limit,
        collision_strategy=strategy,
        concurrency_key=key,
        description=description if description is not None else (inspect.getdoc(flow.fn) or ""),
        code_repository=code_repository,
        code_ref=code_ref,
    )


def deploy(
    flow: Any,
    *,
    name: str,
    work_pool_name: str,
    work_queue_name: str | None = None,
    client: Client | None = None,
    **options: Any,
) -> Deployment:
    """Register ``<flow-name>/<name>`` for the workers of ``work_pool_name``.

    Options: ``cron`` / ``interval`` (+ ``anchor_date``) / ``rrule`` (with
    ``timezone``) or ``schedules=[...]``, ``parameters``, ``concurrency_limit``
    (an int or a :class:`ConcurrencyLimitConfig`), ``tags``, ``paused``,
    ``description``, ``entrypoint`` (default: where the flow is defined, relative
    to ``project_root``, itself by default the working directory), and
    ``code_repository`` / ``code_ref``: a git repository workers check out.
    """
    if not work_pool_name:
        raise ValidationError("deploy() needs work_pool_name (see `headway work-pool create`)")
    spec = build_spec(
        flow,
        name=name,
        work_pool_name=work_pool_name,
        work_queue_name=work_queue_name,
        **options,
    )
    return (client or get_client()).apply_deployment(spec)


__all__ = [
    "build_spec",
    "deploy",
    "entrypoint_of",
    "git_toplevel",
    "relative_to_root",
    "schedules_from",
]
