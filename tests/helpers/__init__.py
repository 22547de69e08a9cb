"""What many test modules need and each used to write for itself.

- :mod:`helpers.waiting`: wait for a condition, a file or runs to end, with a
  timeout that only bounds a failing test (a passing one returns as soon as the
  condition holds).
- :mod:`helpers.processes`: child processes (workers, servers, scripts) started
  with a log file and always stopped, and whether a pid is still alive.
- :mod:`helpers.postgres`: a fresh PostgreSQL database for a test (skips without
  one, fails in CI).
- :mod:`helpers.stuck_process`: why a child did not exit when told to.

Test modules import them as ``from helpers.waiting import wait_until``: ``tests/``
is on ``sys.path`` (pytest puts the root conftest's folder there).
"""
