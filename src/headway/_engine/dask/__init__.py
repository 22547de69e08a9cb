"""The Dask task runner: a flow run's tasks on the workers of a Dask cluster.

``DaskTaskRunner()`` starts a ``distributed.LocalCluster`` (worker processes)
for the flow run's lifetime; ``DaskTaskRunner(address="tcp://host:8786")``
uses a cluster that already runs. Needs ``pip install "headway[dask]"``.

How a task run travels:

* The flow's process keeps the run's :class:`~headway.futures.TaskFuture` and
  waits for its upstream runs there (their results are sent along as
  arguments), exactly as the process-pool runner does.
* On the Dask worker, :func:`run_on_worker` runs the one task engine
  (``run_in_thread``): states, retries, timeouts, tag slots and logs are the
  engine's own. The worker records the run through its own client, whatever
  ``get_client()`` gives there, after adopting the flow's ``HEADWAY_*``
  settings (sent with the task): with ``HEADWAY_API_URL`` it reports through
  the server, without it to the embedded SQLite store on this machine. Tag
  limits and ``concurrency()`` therefore acquire through the one shared
  store and hold across every worker.
* The worker's recorder writes the run as it goes, in background batches. When
  Dask tasks end, the flow's process has their workers flush (one call per
  worker and batch of results, not a store round trip per task on the
  worker's thread) and only then ends the runs' futures: when the flow run
  ends, every task run and log line of it is in the store. The flow's process
  adopts the worker's states (without writing them again) and the result; if a
  worker could not flush (it died), it writes the run's states itself.

Recording order: the flow's process writes a run's PENDING state at most
before the run is handed to Dask (the hand-off waits for any write in flight);
after that the worker writes, so the store never goes back to an older state
(the store skips states it already has when the flow's process must write).

A run whose worker died is decided in the flow's process: if the store never
saw it start it is handed out again; otherwise the death counts as a failed
attempt, retried per the task's ``retries`` or recorded CRASHED. Its slots
come back by themselves (the dead process's lease is reaped at once on the
same machine, or when it expires).

Modules: ``runner.py`` (the runner in the flow's process: starting, handing
runs out), ``collect.py`` (settling runs whose Dask tasks ended), ``worker.py``
(what runs on a Dask worker), ``payload.py`` (what travels between them).
"""

from __future__ import annotations

from headway._engine.dask.payload import settings_env
from headway._engine.dask.runner import DaskTaskRunner
from headway._engine.dask.worker import run_on_worker

__all__ = ["DaskTaskRunner", "run_on_worker", "settings_env"]
