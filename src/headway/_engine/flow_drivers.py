"""The drivers of a flow run: :func:`run_flow_sync` and :func:`run_flow_async`.

Each calls the steps of :class:`~headway._engine.flow_engine.FlowRunEngine` in
order, in its own way: the sync one in the calling thread, the async one on the
running event loop. The flow's own code runs as a body that the run's cancel
interrupts (:mod:`headway._engine.interrupts`); an interrupt that belongs to a
flow around this one (this one was called by its code) goes on to it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from headway._engine import interrupts
from headway._engine.flow_engine import FlowRunEngine

if TYPE_CHECKING:
    from headway.flows import Flow


def run_flow_sync(
    flow: Flow[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
) -> Any:
    """Run a sync flow in this thread."""
    engine = FlowRunEngine(flow, args, kwargs)
    try:
        engine.start(handle_sigterm=True)
        while True:
            engine.begin_attempt()
            try:
                value = _call_body(engine)
            except interrupts.TaskRunCancelled:
                if interrupts.enclosing_interrupted():  # a flow around this one was cancelled
                    raise
                engine.cancelled()
                break
            except Exception as exc:
                engine.wait_for_tasks()
                delay = engine.failed(exc)
                if delay is None:
                    break
                time.sleep(delay)
                continue
            engine.wait_for_tasks()
            engine.succeeded(value)
            break
    except BaseException as exc:
        engine.interrupted(exc)
        raise
    finally:
        engine.close()
    return engine.outcome(return_state)


def _call_body(engine: FlowRunEngine) -> Any:
    # The flow's own code is a body: interrupted, as Python allows, when the run is
    # cancelled (the watch reads the run while it runs) or ends interrupted.
    flow = engine.flow
    if flow.timeout_seconds is None:
        body = interrupts.Body(lambda: flow.fn(*engine.args, **engine.kwargs))
        with interrupts.cancellable(body, engine.id, engine.client):
            return body.run()
    # Loaded for runs with a timeout only: it runs the body in a helper thread.
    from headway._engine.timeouts import call_with_timeout, timeout_error

    return call_with_timeout(
        lambda: flow.fn(*engine.args, **engine.kwargs),
        flow.timeout_seconds,
        timeout_error("flow run", engine.name, flow.timeout_seconds),
        flow_run_id=engine.id,
        client=engine.client,
    )


async def run_flow_async(
    flow: Flow[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], return_state: bool
) -> Any:
    """Run an async flow on the running event loop."""
    # asyncio is loaded by async flows only: a sync program's cold start skips it.
    import asyncio

    engine = FlowRunEngine(flow, args, kwargs)
    try:
        engine.start(handle_sigterm=False)
        while True:
            engine.begin_attempt()
            # The awaited code is cancelled when the run is (see _call_body).
            awaited = interrupts.AsyncBody()
            try:
                body = flow.fn(*engine.args, **engine.kwargs)
                if flow.timeout_seconds is not None:
                    # With a timeout only (see _call_body).
                    from headway._engine.timeouts import await_with_timeout, timeout_error

                    body = await_with_timeout(
                        body,
                        flow.timeout_seconds,
                        timeout_error("flow run", engine.name, flow.timeout_seconds),
                    )
                with interrupts.cancellable(awaited, engine.id, engine.client), awaited:
                    value = await body
            except asyncio.CancelledError:
                if not awaited.owns_cancel():  # someone else's cancel, or a flow's around it
                    raise
                engine.cancelled()
                break
            except Exception as exc:
                await engine.wait_for_tasks_async()
                delay = engine.failed(exc)
                if delay is None:
                    break
                await asyncio.sleep(delay)
                continue
            await engine.wait_for_tasks_async()
            engine.succeeded(value)
            break
    except BaseException as exc:
        engine.interrupted(exc)
        raise
    finally:
        engine.close()
    return engine.outcome(return_state)
