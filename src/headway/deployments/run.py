"""``run_deployment``: a new run of a deployment, optionally waited for."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from headway._backoff import Backoff
from headway.client.base import Client, get_client
from headway.core.models import FlowRun
from headway.exceptions import ValidationError

#: A run is read again after 0.05 s, then 1.5 times later each time, at most every second.
_POLL_BACKOFF = Backoff(first=0.05, cap=1.0, factor=1.5, jitter=0.2)


def run_deployment(
    name: str,
    parameters: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    scheduled_time: datetime | None = None,
    priority: int = 0,
    *,
    flow_run_name: str | None = None,
    tags: Iterable[str] | None = None,
    client: Client | None = None,
) -> FlowRun:
    """Create a run of the deployment ``<flow>/<name>`` and wait for it to end.

    ``parameters`` override the deployment's (checked against the flow's
    signature). ``timeout=0`` returns at once; ``None`` waits for the final
    state; a number of seconds waits at most that long. ``scheduled_time``
    (default: now) is when it is due; ``priority``: higher starts first.
    ``flow_run_name`` names the run (used as given, as in Prefect); ``tags`` are
    added to the deployment's. Returns the flow run as last seen (``.id``, ``.state``).
    """
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
            raise ValidationError(f"timeout must be a number of seconds or None, got {timeout!r}")
        if timeout < 0:
            raise ValidationError(f"timeout must be at least 0, got {timeout}")
    client = client or get_client()
    if isinstance(tags, str):
        raise ValidationError("tags must be a list of strings, not one string")
    run = client.create_deployment_run(
        name,
        parameters=parameters,
        scheduled_time=scheduled_time,
        priority=priority,
        flow_run_name=flow_run_name,
        tags=None if tags is None else tuple(tags),
    )
    if timeout == 0:
        return run
    return wait_for_run(run.id, timeout, client=client)


def wait_for_run(
    run_id: str, timeout: float | None = None, *, client: Client | None = None
) -> FlowRun:
    """Poll a flow run until it is final or ``timeout`` seconds pass; the run as last seen."""
    client = client or get_client()
    deadline = None if timeout is None else time.monotonic() + timeout
    polls = _POLL_BACKOFF.start()
    while True:
        run = client.read_flow_run(run_id)
        if run.state.is_final:
            return run
        pause = polls.next_delay() or _POLL_BACKOFF.cap
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return run
            pause = min(pause, remaining)
        time.sleep(pause)
        polls.count()


__all__ = ["run_deployment", "wait_for_run"]
