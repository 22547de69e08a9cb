"""The process a worker starts for one flow run: ``python -m headway.worker.execute RUN_ID``.

It finds the deployment's code (:mod:`headway.worker.code`: the working
directory it was started in, or a fresh checkout of the deployment's git
repository), loads its entrypoint (``path/to/file.py:flow_function``, relative
to that directory), and runs the flow with the run's parameters as that very
run (the run is already recorded PENDING by the claim; the flow engine adopts
it instead of recording a new one). The flow engine records RUNNING and the
final state, which gives back the run's slots. Anything that stops the run
before it starts (the file cannot be loaded, parameters that do not fit) ends
it FAILED with the reason.

The process dies with its worker: it watches the worker's lifeline pipe
(``HEADWAY_WORKER_LIFELINE_FD``, whose write end only the worker holds) and
kills its own process group when the read returns, so a worker killed with
SIGKILL leaves no run going on without it. Only the worker's process going
counts: not one of its threads ending (``PR_SET_PDEATHSIG`` fires on the exit
of the thread that started the child, which killed runs of a stopping worker).

Output: ``stdout`` and ``stderr`` are read by the worker, which echoes them and
records them as the run's logs; the run loggers' own console lines (already
recorded by the flow engine) go to the descriptor named by
``HEADWAY_WORKER_ECHO_FD``, which the worker only echoes. A run whose code
cannot be found fails with one line naming the path looked in.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from headway import logging as run_logging
from headway._engine import interrupts
from headway._engine.flow_engine import adopted_run
from headway.client.base import get_client
from headway.core.deployments import parse_entrypoint
from headway.core.states import Failed, StateType
from headway.exceptions import CodeUnavailable, ObjectNotFound
from headway.flows import Flow
from headway.settings import get_settings
from headway.worker.code import code_root, entrypoint_path
from headway.worker.env import (
    ENV_ECHO_FD,
    ENV_ENTRYPOINT,
    ENV_LIFELINE_FD,
    ENV_RUN_ID,
    ENV_WORKER_PID,
)


def die_with_worker() -> None:
    """Kill this run's process group the moment its worker's process is gone.

    A thread blocks reading the lifeline pipe: nothing is ever written to it,
    so the read returns (end of file) only when the worker's process, the one
    holder of the write end, has exited, however it went (a SIGKILL included).
    """
    parent = os.environ.get(ENV_WORKER_PID)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        os._exit(3)  # the worker died before this process started watching
    fd_text = os.environ.get(ENV_LIFELINE_FD)
    if not fd_text or not fd_text.isdigit():
        return  # not started by a worker
    fd = int(fd_text)

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 64):
                pass
        # The run's own children (task processes) are in its process group.
        with contextlib.suppress(OSError):
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(3)

    threading.Thread(target=watch, name="headway-worker-lifeline", daemon=True).start()


def load_flow(entrypoint: str, flow_name: str | None = None) -> Any:
    """The flow object at ``path/to/file.py:flow_function`` (a plain function is wrapped)."""
    path_text, attr = parse_entrypoint(entrypoint)
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    # Sibling modules of the flow's file import as they do when it runs as a script.
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module_name = f"headway_entrypoint_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"{path} has no attribute {attr!r}") from None
    if isinstance(obj, Flow):
        return obj
    if callable(obj):
        return Flow(obj, name=flow_name)
    raise TypeError(f"{entrypoint} is not a flow or a function")


def _route_run_console() -> None:
    # The run loggers print what they record; those lines go to the echo-only
    # descriptor so the worker does not record them a second time.
    fd_text = os.environ.get(ENV_ECHO_FD)
    if not fd_text or not fd_text.isdigit():
        return

    run_logging._configure()
    stream = os.fdopen(int(fd_text), "w", buffering=1, encoding="utf-8", errors="replace")
    for name in (run_logging.FLOW_LOGGER, run_logging.TASK_LOGGER):
        target = logging.getLogger(name)
        for handler in list(target.handlers):
            if not isinstance(handler, logging.StreamHandler) or isinstance(
                handler, logging.FileHandler
            ):
                continue
            # Same format and filters, another stream.
            echo = logging.StreamHandler(stream)
            echo.setLevel(handler.level)
            echo.setFormatter(handler.formatter)
            for item in handler.filters:
                echo.addFilter(item)
            target.removeHandler(handler)
            target.addHandler(echo)


def _echo_prints_only(flow: Any) -> None:
    # With log_prints the flow engine records print() itself: its lines are echoed only.
    fd_text = os.environ.get(ENV_ECHO_FD)
    if not fd_text or not fd_text.isdigit():
        return
    recorded = flow.log_prints
    if recorded is None:
        try:
            recorded = get_settings().log_prints
        except Exception:
            recorded = False
    if recorded:
        sys.stdout.flush()
        os.dup2(int(fd_text), 1)


def run(run_id: str, entrypoint: str | None) -> int:
    """Run the flow run ``run_id``; the exit code (0: COMPLETED)."""
    # The worker watches the run and signals this process when it is cancelled.
    interrupts.signalled_by_worker()
    client = get_client()
    run = client.read_flow_run(run_id)
    if run.state.type is not StateType.PENDING:
        # Cancelled (or taken back) between the claim and now: nothing to run.
        return 0
    deployment = None
    if run.deployment is not None:
        with contextlib.suppress(ObjectNotFound):  # deleted since the claim
            deployment = client.read_deployment(run.deployment)
    if entrypoint is None:
        if deployment is None:
            raise SystemExit(f"flow run {run_id} has no deployment to take an entrypoint from")
        entrypoint = deployment.entrypoint
    try:
        if not entrypoint:
            raise ValueError(f"deployment {run.deployment} has no entrypoint")
        root = code_root(deployment, client.settings.home / "code", Path.cwd())
        path, attr = entrypoint_path(entrypoint, root)
        if root != Path.cwd():
            # A checkout: the run sees it as its working directory and imports from it.
            os.chdir(root)
            sys.path.insert(0, str(root))
        flow = load_flow(f"{path}:{attr}", run.flow_name)
    except CodeUnavailable as exc:
        print(f"Error: {exc}", file=sys.stderr)
        client.set_flow_run_state(
            run_id, Failed(message=str(exc)), expect=frozenset({StateType.PENDING})
        )
        return 1
    except BaseException as exc:
        traceback.print_exc()
        client.set_flow_run_state(
            run_id,
            Failed(message=f"cannot load entrypoint {entrypoint}: {type(exc).__name__}: {exc}"),
            expect=frozenset({StateType.PENDING}),
        )
        return 1
    _echo_prints_only(flow)
    token = adopted_run.set((run.id, run.name))
    try:
        try:
            if flow.is_async:
                state = asyncio.run(flow(**run.parameters, return_state=True))
            else:
                state = flow(**run.parameters, return_state=True)
        except TypeError as exc:
            if client.read_flow_run(run_id).state.type is not StateType.PENDING:
                raise
            # The parameters did not bind: nothing ran.
            client.set_flow_run_state(
                run_id,
                Failed(message=f"parameters do not fit the flow: {exc}"),
                expect=frozenset({StateType.PENDING}),
            )
            return 1
    finally:
        adopted_run.reset(token)
    return 0 if state.is_completed() else 1


def _preload() -> None:
    """Open what every run needs, before there is a run to run (the SDK is imported)."""
    client = get_client()
    # Embedded: open the store now. Over HTTP: build the connection pool now
    # (making its TLS context alone takes a fifth of a second).
    for prepared in ("orchestrator", "transport"):
        getattr(client, prepared, None)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the run process.

    ``RUN_ID`` runs that run. ``--standby`` first imports and opens everything,
    then waits for one line on stdin, ``{"run_id": ..., "entrypoint": ...}``:
    a worker keeps one such process ready, so a run that can start does not
    wait for Python to start and import (EOF on stdin: exit without running).
    """
    die_with_worker()
    args = sys.argv[1:] if argv is None else argv
    entrypoint = os.environ.get(ENV_ENTRYPOINT) or None
    if args and args[0] == "--standby":
        _preload()
        line = sys.stdin.readline()
        if not line.strip():
            return 0

        order = json.loads(line)
        run_id = str(order["run_id"])
        entrypoint = order.get("entrypoint") or None
    else:
        run_id = args[0] if args else os.environ.get(ENV_RUN_ID, "")
    if not run_id:
        print("usage: python -m headway.worker.execute RUN_ID | --standby", file=sys.stderr)
        return 2
    _route_run_console()
    return run(run_id, entrypoint)


if __name__ == "__main__":
    sys.exit(main())
