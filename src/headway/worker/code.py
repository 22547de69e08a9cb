"""Where a run's code is: the worker's working directory, or a checkout of a git repository.

A deployment's entrypoint is relative to its project root (``flows/etl.py:etl``).
Without a code source, the root is the working directory the run process
starts in (``headway worker start --working-dir``). With one, the worker's run
process brings its cache up to date before each run:

- ``$HEADWAY_HOME/code/<hash of the repository>/repo.git`` is a mirror of the
  repository, cloned once and fetched before every run;
- the ref (default: the repository's HEAD) is resolved to a commit there, and
  that commit is checked out once into ``.../<commit>/``, never changed after,
  so runs of different commits on one machine never share a directory.

Runs on one machine take turns on the cache under a file lock. An entrypoint
stored as an absolute path (deployments made before entrypoints were
relative) is used as it is.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headway.core.deployments import parse_entrypoint
from headway.core.models import Deployment
from headway.exceptions import CodeUnavailable

#: The longest a clone or fetch may take.
GIT_TIMEOUT_SECONDS = 600.0


def code_root(deployment: Deployment | None, cache: Path, working_dir: Path) -> Path:
    """The directory ``deployment``'s entrypoint is relative to, brought up to date."""
    if deployment is None or not deployment.code_repository:
        return working_dir
    return checkout(deployment.code_repository, deployment.code_ref, cache)


def entrypoint_path(entrypoint: str, root: Path) -> tuple[Path, str]:
    """The file and attribute of ``entrypoint``; CodeUnavailable naming the path if absent."""
    path_text, attr = parse_entrypoint(entrypoint)
    given = Path(path_text).expanduser()
    path = given if given.is_absolute() else root / given
    if not path.is_file():
        where = "" if given.is_absolute() else f" (entrypoint {path_text} relative to {root})"
        raise CodeUnavailable(f"cannot find the flow's code: no such file {path}{where}")
    return path, attr


def checkout(repository: str, ref: str | None, cache: Path) -> Path:
    """A checkout of ``ref`` of ``repository`` under ``cache``, fetched anew; its directory."""
    base = cache / hashlib.sha256(repository.encode()).hexdigest()[:16]
    base.mkdir(parents=True, exist_ok=True)
    mirror = base / "repo.git"
    wanted = ref or "HEAD"
    with _locked(base / ".lock"):
        if (mirror / "HEAD").is_file():
            _git(repository, wanted, "--git-dir", str(mirror), "fetch", "--quiet", "--prune")
        else:
            partial = base / "repo.git.partial"
            shutil.rmtree(partial, ignore_errors=True)
            _git(repository, wanted, "clone", "--quiet", "--mirror", "--", repository, str(partial))
            partial.rename(mirror)
        commit = _git(
            repository, wanted, "--git-dir", str(mirror), "rev-parse", "--verify", "--quiet",
            f"{wanted}^{{commit}}",
        )  # fmt: skip
        tree = base / commit
        if not tree.is_dir():
            partial = base / f"{commit}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            _git(repository, wanted, "clone", "--quiet", "--no-checkout", "--", str(mirror),
                 str(partial))  # fmt: skip
            _git(repository, wanted, "-C", str(partial), "checkout", "--quiet", "--detach", commit)
            partial.rename(tree)
    return tree


def _git(repository: str, ref: str, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CodeUnavailable(
            f"cannot get the flow's code from {repository} at {ref}: {exc}"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"git {args[-1] if args else ''} exited {done.returncode}"
        if "rev-parse" in args:
            why = f"no branch, tag or commit named {ref!r}"
        raise CodeUnavailable(f"cannot get the flow's code from {repository} at {ref}: {why}")
    return done.stdout.strip()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


__all__ = ["GIT_TIMEOUT_SECONDS", "checkout", "code_root", "entrypoint_path"]
