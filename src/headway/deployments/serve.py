"""``serve()``: register deployments and run them from this process.

Two forms, one runner: ``my_flow.serve(name=..., cron=...)`` (or
``serve(my_flow, name=...)``) serves one deployment; ``serve(a, b, ...)`` with
deployments made by ``flow.to_deployment()`` serves several at once, as
Prefect's ``serve(*deployments)`` does.
"""

from __future__ import annotations

from typing import Any

from headway.client.base import Client, get_client
from headway.deployments.deploy import build_spec
from headway.deployments.runner import Runner
from headway.deployments.runner_deployment import RunnerDeployment, served_specs
from headway.exceptions import ValidationError


def serve(
    *targets: Any,
    name: str | None = None,
    limit: int | None = None,
    client: Client | None = None,
    print_starting_message: bool = True,
    **options: Any,
) -> None:
    """Register the deployments and run their schedules and runs here until stopped.

    ``serve(flow, name=..., **options)`` registers ``<flow-name>/<name>``;
    options are those of ``deploy()`` without a pool: ``cron`` / ``interval`` /
    ``rrule`` / ``schedules``, ``parameters``, ``concurrency_limit``, ``tags``,
    ``paused``. ``serve(dep1, dep2, ...)`` registers deployments made by
    ``flow.to_deployment()`` (a work pool given to one is ignored, with a
    warning). ``limit`` caps the runs this process runs at once.

    Blocks until Ctrl-C or SIGTERM; then runs still going are cancelled
    (SIGTERM, SIGKILL after a grace period) so none is left RUNNING. Entrypoints
    are stored relative to ``project_root`` (default: the working directory),
    and the runs start there.
    """
    if targets and all(isinstance(t, RunnerDeployment) for t in targets):
        if name is not None or options:
            raise ValidationError(
                "serve(deployment, ...) takes no deployment options; give them to"
                " flow.to_deployment()"
            )
        deployments: list[RunnerDeployment] = list(targets)
        specs = served_specs(deployments)
        roots = {str(d.project_root) for d in deployments if d.project_root is not None}
        if len(roots) > 1:
            raise ValidationError(
                "deployments served together must share one project_root; got "
                + ", ".join(sorted(roots))
            )
        working_dir: Any = roots.pop() if roots else None
    elif len(targets) == 1 and not isinstance(targets[0], RunnerDeployment):
        if name is None:
            raise ValidationError("serve(flow, name=...) needs the deployment's name")
        specs = [build_spec(targets[0], name=name, **options)]
        working_dir = options.get("project_root")
    else:
        raise ValidationError(
            "serve() takes one flow and name=..., or deployments made by flow.to_deployment()"
        )
    client = client or get_client()
    names = [client.apply_deployment(spec).full_name for spec in specs]
    if print_starting_message:
        # The same hint `headway deploy` prints: how to start a run by hand.
        hints = "".join(f"\n  headway deployment run '{n}'" for n in names)
        print(f"Serving {len(names)} deployment(s); start a run with:{hints}", flush=True)
    Runner(names, client=client, limit=limit, working_dir=working_dir).run()


__all__ = ["serve"]
