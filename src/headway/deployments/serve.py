"""``flow.serve()``: register a deployment and run it from this process."""

from __future__ import annotations

from typing import Any

from headway.client.base import Client, get_client
from headway.deployments.deploy import build_spec
from headway.deployments.runner import Runner


def serve(
    flow: Any,
    *,
    name: str,
    limit: int | None = None,
    client: Client | None = None,
    **options: Any,
) -> None:
    """Register ``<flow-name>/<name>`` and run its scheduler and runs here until stopped.

    Blocks until Ctrl-C or SIGTERM; then runs still going are cancelled
    (SIGTERM, SIGKILL after a grace period) so none is left RUNNING. Options are
    those of ``deploy()`` without a pool: ``cron`` / ``interval`` / ``rrule`` /
    ``schedules``, ``parameters``, ``concurrency_limit``, ``tags``, ``paused``.
    ``limit`` caps the runs this process runs at once. The entrypoint is stored
    relative to ``project_root`` (default: the working directory), and the runs
    start there.
    """
    client = client or get_client()
    spec = build_spec(flow, name=name, **options)
    deployment = client.apply_deployment(spec)
    Runner(
        [deployment.full_name],
        client=client,
        limit=limit,
        working_dir=options.get("project_root"),
    ).run()


__all__ = ["serve"]
