"""``flow.to_deployment()``: a deployment described in code, registered when served or applied.

Prefect's ``RunnerDeployment`` under the same name: ``my_flow.to_deployment("nightly",
cron="0 3 * * *")`` builds and validates one without touching the store;
``headway.serve(a, b, ...)`` registers several and runs them all from one
process, and :meth:`RunnerDeployment.apply` registers one for later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from headway.client.base import Client, get_client
from headway.core.deployments import DeploymentSpec, validate_object_name, validate_strategy
from headway.core.schedules import Schedule, schedule_from_dict
from headway.deployments.config import ConcurrencyLimitConfig, validate_grace_period
from headway.deployments.deploy import build_spec
from headway.exceptions import ValidationError

#: Options of Prefect's ``to_deployment`` that need parts headway does not have
#: (automations, infrastructure templates): refused, never silently dropped.
UNSUPPORTED = ("triggers", "job_variables", "schedule", "entrypoint_type", "_sla")


@dataclass(frozen=True)
class DeploymentScheduleView:
    """One schedule of a :class:`RunnerDeployment`: ``.schedule`` is a headway schedule."""

    schedule: Schedule
    active: bool = True


@dataclass(frozen=True)
class ConcurrencyOptions:
    """What a deployment run does when its limit is full, as given in a ConcurrencyLimitConfig."""

    collision_strategy: str
    grace_period_seconds: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "collision_strategy", validate_strategy(self.collision_strategy))
        if self.grace_period_seconds is not None:
            validate_grace_period(self.grace_period_seconds)


class RunnerDeployment:
    """A validated deployment of a flow, not registered yet. Made by ``flow.to_deployment()``."""

    def __init__(
        self,
        spec: DeploymentSpec,
        *,
        concurrency_options: ConcurrencyOptions | None = None,
        version: str | None = None,
        project_root: str | Path | None = None,
    ) -> None:
        self.spec = spec
        self.concurrency_options = concurrency_options
        #: Kept on the object for code that reads it back; headway stores no versions.
        self.version = version
        self.project_root = project_root

    @classmethod
    def from_flow(cls, flow: Any, name: str, **options: Any) -> RunnerDeployment:
        """What ``flow.to_deployment(name, ...)`` returns: checked now, stored later."""
        validate_object_name(name, "deployment")
        refused = [key for key in UNSUPPORTED if options.get(key) is not None]
        if refused:
            raise ValidationError(
                f"to_deployment(): {', '.join(refused)} not supported by headway"
                " (see docs/coming-from-prefect.md)"
            )
        for key in UNSUPPORTED:
            options.pop(key, None)
        version = options.pop("version", None)
        options.pop("version_type", None)
        # headway always checks run parameters against the flow's signature.
        options.pop("enforce_parameter_schema", None)
        if options.get("paused") is None:
            options.pop("paused", None)
        if options.get("tags") is None:
            options.pop("tags", None)
        limit = options.get("concurrency_limit")
        concurrency_options = None
        if isinstance(limit, ConcurrencyLimitConfig):
            concurrency_options = ConcurrencyOptions(
                limit.collision_strategy, limit.grace_period_seconds
            )
        spec = build_spec(flow, name=name, **options)
        return cls(
            spec,
            concurrency_options=concurrency_options,
            version=version,
            project_root=options.get("project_root"),
        )

    # -- Prefect's attribute names --------------------------------------------------------
    @property
    def name(self) -> str:
        """The deployment's name (the part after ``<flow>/``)."""
        return self.spec.name

    @property
    def flow_name(self) -> str:
        """The name of the deployed flow."""
        return self.spec.flow_name

    @property
    def full_name(self) -> str:
        """``<flow>/<name>``, what ``headway deployment run`` takes."""
        return f"{self.spec.flow_name}/{self.spec.name}"

    @property
    def entrypoint(self) -> str | None:
        """``path/to/file.py:flow_function``, relative to the project root."""
        return self.spec.entrypoint

    @property
    def parameters(self) -> dict[str, Any]:
        """Default parameters of its runs."""
        return dict(self.spec.parameters)

    @property
    def tags(self) -> list[str]:
        """Its tags, in the order given."""
        return list(self.spec.tags)

    @property
    def description(self) -> str:
        """What it does (default: the flow's docstring)."""
        return self.spec.description

    @property
    def paused(self) -> bool:
        """Whether its schedules start paused."""
        return self.spec.paused

    @property
    def concurrency_limit(self) -> int | None:
        """Runs of it at once (None: no limit, runs overlap)."""
        return self.spec.concurrency_limit

    @property
    def schedules(self) -> list[DeploymentScheduleView]:
        """Its schedules, each as ``.schedule`` (a Cron-, Interval- or RRuleSchedule)."""
        return [DeploymentScheduleView(schedule_from_dict(s)) for s in self.spec.schedules]

    @property
    def work_pool_name(self) -> str | None:
        """The pool its runs go to; None when served."""
        return self.spec.work_pool

    @work_pool_name.setter
    def work_pool_name(self, value: str | None) -> None:
        self.spec = replace(self.spec, work_pool=value)

    @property
    def work_queue_name(self) -> str | None:
        """The pool's queue its runs go to."""
        return self.spec.work_queue

    def apply(self, client: Client | None = None) -> str:
        """Register (or update) it; its id, as Prefect's ``apply()`` returns."""
        return (client or get_client()).apply_deployment(self.spec).id

    def __repr__(self) -> str:
        return f"RunnerDeployment({self.full_name!r})"


def served_specs(deployments: Iterable[RunnerDeployment]) -> list[DeploymentSpec]:
    """The specs to register for ``serve()``: checked, with any work pool dropped."""
    import warnings

    specs: list[DeploymentSpec] = []
    seen: set[str] = set()
    for deployment in deployments:
        if not isinstance(deployment, RunnerDeployment):
            raise ValidationError(
                f"serve() takes deployments made by flow.to_deployment(), got {deployment!r}"
            )
        if deployment.full_name in seen:
            raise ValidationError(f"deployment {deployment.full_name!r} is given twice")
        seen.add(deployment.full_name)
        spec = deployment.spec
        if spec.work_pool is not None:
            # As in Prefect: a served deployment runs here, not on a pool's workers.
            warnings.warn(
                f"serve() runs {deployment.full_name!r} in this process; its work pool"
                f" {spec.work_pool!r} is ignored (leave work_pool_name out of to_deployment)",
                UserWarning,
                stacklevel=3,
            )
            spec = replace(spec, work_pool=None, work_queue=None)
        specs.append(spec)
    return specs


__all__ = ["ConcurrencyOptions", "DeploymentScheduleView", "RunnerDeployment", "served_specs"]
