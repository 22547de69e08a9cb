"""Running a server from Python: in a thread of this process, or as a subprocess.

Tests, benchmarks and embedding code use these; ``headway server start`` is
the command line way. Both bind a loopback port chosen by the OS unless told
otherwise, and return only once the server answers ``/health``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headway.core.clock import SYSTEM_CLOCK, Clock
from headway.exceptions import StoreError
from headway.settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for a subprocess that binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerThread:
    """The server app on a loopback port, served by uvicorn in a thread of this process."""

    def __init__(
        self, settings: Settings, *, host: str = "127.0.0.1", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        # Loaded when a server runs in this process: the CLI and tests that start
        # one as a subprocess never pay for uvicorn, FastAPI and the app.
        import uvicorn

        from headway.server.app import create_app

        self.settings = settings
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(settings, clock=clock),
            log_level="warning",
            access_log=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def app(self) -> Any:
        """The served FastAPI app (its ``state`` holds the orchestrator and held requests)."""
        return self._server.config.app

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start serving; returns once the app has started (store opened, services on)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        done = threading.Event()
        while not self._server.started:
            if not self._thread.is_alive():
                raise StoreError("the server thread stopped while starting")
            if time.monotonic() > deadline:
                raise StoreError(f"the server did not start within {timeout} s")
            done.wait(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess:
    """``headway server start`` as a subprocess, on a free loopback port by default."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        log_path: Path | None = None,
    ) -> None:
        self.env = dict(os.environ if env is None else env)
        self.env.pop("HEADWAY_API_URL", None)
        self.host = host
        # A port picked here may be taken by someone else before the server binds it.
        self._own_port = port is None
        self.port = port or free_port(host)
        self.workers = workers
        self.extra_args = extra_args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the process; returns once ``/health`` answers.

        If the server exits while starting on a port picked for it (someone took
        the port meanwhile), it is started again on another, at most three times.
        """
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except StoreError:
                if not self._own_port or self.proc is None or self.proc.poll() is None:
                    raise
                if attempt == 2:
                    raise
                self.port = free_port(self.host)
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> ServerProcess:
        args = [
            sys.executable,
            "-c",
            "from headway.cli import run; run()",
            "server",
            "start",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.extra_args,
        ]
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            args,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_healthy(self.url, timeout, self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL the server (and its worker processes): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    # A server started for a test or a benchmark must not outlive it when the
    # runner is killed (Linux: the kernel sends SIGTERM when the parent thread dies).
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Return once ``url``/health answers 200; StoreError after ``timeout`` or if ``proc`` ends."""
    import httpx  # only where a server is waited for (~0.2 s to import)

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if proc is not None and proc.poll() is not None:
            raise StoreError(f"the server at {url} exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise StoreError(f"the server at {url} did not become healthy within {timeout} s")
        pause.wait(0.02)
