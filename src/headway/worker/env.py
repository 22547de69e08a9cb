"""The environment a worker gives each run process (read by ``headway.worker.execute``)."""

from __future__ import annotations

#: The flow run the process runs.
ENV_RUN_ID = "HEADWAY_FLOW_RUN_ID"
#: ``path/to/file.py:flow_function`` of the run's deployment.
ENV_ENTRYPOINT = "HEADWAY_ENTRYPOINT"
#: The worker's pid: the process exits if its parent is no longer that worker.
ENV_WORKER_PID = "HEADWAY_WORKER_PID"
#: A descriptor for output the flow engine already records (the worker only echoes it).
ENV_ECHO_FD = "HEADWAY_WORKER_ECHO_FD"
#: The read end of the worker's lifeline pipe: it returns when the worker is gone.
ENV_LIFELINE_FD = "HEADWAY_WORKER_LIFELINE_FD"
