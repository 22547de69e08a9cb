"""Deployments: register a flow to run on schedules, by workers, under a concurrency limit.

- ``my_flow.serve(name=..., cron=...)`` registers ``<flow>/<name>`` and runs its
  scheduler and a worker loop in this process until Ctrl-C or SIGTERM.
- ``my_flow.deploy(name=..., work_pool_name=...)`` (or ``headway deploy
  file.py:fn --name N --pool P``) registers it for workers of a pool.
- ``headway.serve(a.to_deployment("x"), b.to_deployment("y"))`` serves several
  deployments (:class:`RunnerDeployment`) from one process.
- :func:`run_deployment` starts a run of a deployment and (optionally) waits for it.
- :class:`ConcurrencyLimitConfig` says what happens when a run finds the
  deployment's limit full: wait (ENQUEUE), be cancelled (CANCEL_NEW), or
  cancel the runs in progress (CANCEL_IN_PROGRESS).
"""

from __future__ import annotations

from headway.deployments.config import ConcurrencyLimitConfig
from headway.deployments.deploy import deploy
from headway.deployments.run import run_deployment
from headway.deployments.runner_deployment import RunnerDeployment
from headway.deployments.serve import serve

__all__ = ["ConcurrencyLimitConfig", "RunnerDeployment", "deploy", "run_deployment", "serve"]
