"""HttpClient: the Client contract over HTTP, to a ``headway server``.

Callers cannot tell it from the embedded client (the Orchestrator): the same
methods return the same records and raise the same ``HeadwayError``
subclasses (the server names the class in every error body, and
:mod:`~headway.client.wire` maps it back). HttpClient inherits the
:class:`~headway.api.operations.Client` protocol: each operation's method is
its declaration, which builds the request and hands it to
:meth:`HttpClient.call_operation`. The few methods written here add what a
declaration cannot say: a held acquire, batches, a claim's process, and what
a request sent again after a lost answer means.

One keep-alive connection pool per process; requests that never reached the
server (connection refused, a server restarting) go on through the next server
``HEADWAY_API_URL`` names, or are retried with back-off, so a restart is a
pause rather than a failure. httpx is imported only when this module is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from headway import exceptions
from headway._backoff import Backoff, Retry
from headway._process import current_process
from headway.api.operation import Op
from headway.api.operations import Client
from headway.client.transport import HttpxTransport, KeepAliveTransport, Transport
from headway.client.wire import _batches, _returns, _server, decode, encode, error_from_response
from headway.core.limits import Mode, ProcessInfo, SlotGrant, SlotWait
from headway.core.models import ClaimedRun, FlowRun, LogRecord, TaskRunRecord, to_jsonable
from headway.core.states import State, StateType
from headway.exceptions import AnswerLost
from headway.settings import Settings

#: How long one acquire request is held by the server before it is asked again
#: (the server caps it at its own long-poll cap).
POLL_SECONDS = 25.0

#: Pauses between tries of a request that did not reach the server (or found
#: its store unavailable), within the client's ``retry_seconds``.
UNREACHABLE_BACKOFF = Backoff(first=0.05, cap=1.0)

logger = logging.getLogger("headway.client")


class HttpClient(Client):
    """Every Client operation as a request to the server at ``settings.api_url``."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_url: str | None = None,
        retry_seconds: float = 15.0,
        timeout_seconds: float = 30.0,
    ) -> None:
        url = api_url or settings.api_url
        if not url:
            raise exceptions.ConfigurationError("HEADWAY_API_URL is not set")
        self.settings = settings
        #: As configured: one server, or several separated by commas (the same
        #: store behind each), tried in turn when one cannot be reached.
        self.api_url = url
        #: How long a request that cannot reach the server is retried before failing.
        self.retry_seconds = retry_seconds
        self.timeout_seconds = timeout_seconds
        self._servers = [_server(part, url) for part in url.split(",") if part.strip()]
        if not self._servers:
            raise exceptions.ConfigurationError(f"HEADWAY_API_URL names no server: {url!r}")
        # The server in use: every request goes there until it cannot be reached.
        self._current = 0
        self._headers = [("User-Agent", "headway-client"), ("Accept", "application/json")]
        if settings.api_key:
            self._headers.append(("Authorization", f"Bearer {settings.api_key}"))
        self._json_headers = [*self._headers, ("Content-Type", "application/json")]
        self._transport: Transport | None = None
        # Set by stop_retrying(): a call that cannot reach the server fails at once.
        self._give_up = threading.Event()
        self._pid = 0
        self._lock = threading.Lock()

    # -- transport -----------------------------------------------------------------
    @property
    def transport(self) -> Transport:
        """The process's keep-alive connection pool (made anew in a forked child).

        headway's own (:class:`KeepAliveTransport`), or httpx's when the settings
        say ``HEADWAY_CLIENT_TRANSPORT=httpx``.
        """
        transport = self._transport
        if transport is None or self._pid != os.getpid():
            with self._lock:
                if self._transport is None or self._pid != os.getpid():
                    self._transport = self._new_transport()
                    self._pid = os.getpid()
                transport = self._transport
        return transport

    def _new_transport(self) -> Transport:
        if self.settings.client_transport == "httpx":
            return HttpxTransport()  # makes its TLS context now
        transport = KeepAliveTransport()
        if any(server.scheme == "https" for server in self._servers):
            # Made now, not at the first request (a standby run process
            # builds its client ahead so a run starts without this wait).
            transport.tls_context()
        return transport

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
        recover: Callable[[exceptions.HeadwayError], Any] | None = None,
        resent_answer: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Send one request; its decoded JSON body, or the mapped ``HeadwayError``.

        A request that could not be delivered is retried with back-off for
        ``retry_seconds``; one whose answer was lost is retried only when it is
        idempotent (GET by default), since the server may have acted on it;
        otherwise :class:`AnswerLost` is raised. ``recover``, when given, turns the
        error answer to a request sent again after a lost answer (the first one
        may have been carried out: "already exists", "already in that state")
        into the result; ``resent_answer`` does the same for a success answer.
        """
        # A transport is used directly: httpx's Client layer above it (cookies,
        # redirects, auth flows, URL merging) costs more than the request itself
        # on a loopback server, and headway needs none of it.
        if idempotent is None:
            idempotent = method == "GET"
        if body is not None:
            try:
                content = json.dumps(body, separators=(",", ":")).encode()
            except (TypeError, ValueError) as exc:
                raise exceptions.ValidationError(f"values must be JSON values: {exc}") from None
        # Every request but a read says JSON, body or not: a server without an API
        # key refuses other state-changing requests (a browser could forge them).
        json_headers = content is not None or method not in ("GET", "HEAD")
        headers = self._json_headers if json_headers else self._headers
        wait = self.timeout_seconds if timeout is None else timeout
        timeouts = {"connect": 5.0, "read": wait, "write": wait}
        query = "?" + str(httpx.QueryParams(params)) if params else ""
        current = self._current
        server = self._servers[current]
        # Servers tried since the last pause: all of them down means a pause.
        tried = 1
        started = time.monotonic()
        retry: Retry | None = None  # made at the first failure, off the hot path
        resent = False
        while True:
            try:
                status, _, answer = self.transport.send(
                    method,
                    server.scheme,
                    server.host,
                    server.port,
                    server.path + path + query,
                    headers,
                    content,
                    timeouts,
                )
                if logger.isEnabledFor(logging.DEBUG):
                    # The path and status only: headers (the API key) are never logged.
                    logger.debug("%s %s%s -> %d", method, server.url, path, status)
                # A server that could not reach its store and wrote nothing (a
                # PostgreSQL restart) answers StoreUnavailable: safe to send again.
                if status != 503 or not isinstance(
                    error_from_response(status, answer), exceptions.StoreUnavailable
                ):
                    break
                retry = retry or self._retry(started)
                if not retry.pause():
                    break
                continue
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                error: Exception = exc
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                if not idempotent:
                    # The next request goes to another server: this one may be gone.
                    self._fail_over(current)
                    raise AnswerLost(
                        f"the connection to the headway server at {server.url} failed"
                        f" during {method} {path}: {exc or type(exc).__name__}"
                    ) from exc
                error = exc
                resent = True
            except httpx.TimeoutException as exc:
                raise exceptions.StoreError(
                    f"the headway server at {server.url} did not answer {method} {path} in time"
                ) from exc
            if tried < len(self._servers) and not self._give_up.is_set():
                # Another server serves the same store: go on through it at once.
                current = self._fail_over(current)
                server, tried = self._servers[current], tried + 1
                continue
            retry = retry or self._retry(started)
            if not retry.pause():
                raise exceptions.StoreError(
                    f"cannot reach the headway server at {server.url}:"
                    f" {error or type(error).__name__}"
                ) from error
            tried = 1
            if len(self._servers) > 1:
                current = self._fail_over(current)
                server = self._servers[current]
        if status >= 400:
            failure = error_from_response(status, answer)
            if resent and recover is not None:
                return recover(failure)
            raise failure
        if status == 204 or not answer:
            return None
        decoded = json.loads(answer)
        if resent and resent_answer is not None:
            return resent_answer(decoded)
        return decoded

    def _fail_over(self, failed: int) -> int:
        """Move off server ``failed`` (unless another request already did); the one now in use."""
        with self._lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self._servers)
                if len(self._servers) > 1:
                    logger.warning(
                        "headway server %s cannot be reached; going on through %s",
                        self._servers[failed].url,
                        self._servers[self._current].url,
                    )
            return self._current

    @property
    def server_url(self) -> str:
        """The server requests go to now (one of ``api_url``'s)."""
        return self._servers[self._current].url

    def _retry(self, started: float) -> Retry:
        """The pauses of a request that failed, within ``retry_seconds`` of ``started``."""
        left = self.retry_seconds - (time.monotonic() - started)
        # stop_retrying() interrupts a pause: the call then fails at once.
        return UNREACHABLE_BACKOFF.start(within=max(0.0, left), sleep=self._give_up.wait)

    def stop_retrying(self) -> None:
        """From now on, a request that cannot reach the server fails at once (no back-off)."""
        self._give_up.set()

    def close(self) -> None:
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None and self._pid == os.getpid():
            transport.close()

    def call_operation(self, op: Op[Any, Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """Send one declared operation (see :mod:`headway.api.operation`); its decoded result."""
        sent = op.request(args, kwargs)
        answer = self.request(
            op.method, sent.path, body=sent.body, params=sent.params, idempotent=op.idempotent
        )
        if op.answer is not None:
            answer = answer[op.answer]
        return _returns(op)(answer)

    # -- runs ----------------------------------------------------------------------
    def create_flow_run(
        self,
        *,
        id: str,
        name: str,
        flow_name: str,
        state: State,
        parameters: dict[str, object] | None = None,
        deployment: str | None = None,
        parent_task_run_id: str | None = None,
        tags: Sequence[str] = (),
        pid: int | None = None,
        host: str | None = None,
    ) -> FlowRun:
        body = {
            "id": id,
            "name": name,
            "flow_name": flow_name,
            "state": encode(state),
            "parameters": encode(parameters or {}),
            "deployment": deployment,
            "parent_task_run_id": parent_task_run_id,
            "tags": list(tags),
            "pid": pid,
            "host": host,
        }

        def already_created(error: exceptions.HeadwayError) -> Any:
            # The first attempt was carried out, its answer lost: the run is ours.
            if not isinstance(error, exceptions.ObjectAlreadyExists):
                raise error
            found = self.request("GET", f"/flow_runs/{_id(id)}")
            if found.get("flow_name") != flow_name or found.get("name") != name:
                raise error
            return found

        # Safe to send again: the id is the caller's, and a repeat is recognised.
        answer = self.request(
            "POST", "/flow_runs", body=body, idempotent=True, recover=already_created
        )
        return decode(FlowRun, answer)

    def set_flow_run_state(
        self, run_id: str, state: State, *, expect: frozenset[StateType] | None = None
    ) -> FlowRun:
        body = {
            "state": encode(state),
            "expect": None if expect is None else sorted(t.value for t in expect),
        }

        def already_set(error: exceptions.HeadwayError) -> Any:
            # The first attempt moved the run, its answer lost: the run is there now.
            if not isinstance(error, exceptions.IllegalTransition):
                raise error
            found = self.request("GET", f"/flow_runs/{_id(run_id)}")
            if found.get("state", {}).get("type") != state.type.value:
                raise error
            return found

        answer = self.request(
            "POST",
            f"/flow_runs/{_id(run_id)}/state",
            body=body,
            idempotent=True,
            recover=already_set,
        )
        return decode(FlowRun, answer)

    def record_task_runs(self, records: Sequence[TaskRunRecord]) -> None:
        # Repeating a record is harmless (the store updates by id), so a batch
        # whose answer was lost may be sent again.
        for chunk in _batches(records):
            self.request("POST", "/task_runs/batch", content=chunk, idempotent=True)

    def write_logs(self, records: Sequence[LogRecord]) -> None:
        # A batch whose answer was lost (the server died mid-request) is sent
        # again: a log line may then be stored twice, but never lost.
        for chunk in _batches(records):
            self.request("POST", "/logs/batch", content=chunk, idempotent=True)

    # -- slots ---------------------------------------------------------------------
    def acquire_slots(
        self,
        names: Sequence[str],
        slots: int = 1,
        *,
        mode: Mode = "concurrency",
        priority: int = 0,
        holder_kind: str = "code",
        holder_id: str | None = None,
        process: ProcessInfo | None = None,
        lease_seconds: float | None = None,
        timeout: float | None = 0.0,
        waiter_id: str | None = None,
        strict: bool = False,
    ) -> SlotGrant | SlotWait:
        """Take slots through the server: a request it holds until granted or ``timeout``.

        The server holds one request for at most its long-poll cap. Without a
        ``waiter_id`` this call owns its place in the queue: it asks again under
        the same (private) id until granted or ``timeout`` passes, and leaves
        nothing queued when it returns ungranted. With one, it makes a single
        held request and returns what it got: the caller, who may also cancel
        the id, asks again to keep waiting (as the Client contract says).
        """
        if isinstance(names, str):
            names = [names]
        if process is None:
            process = current_process()
        owned = waiter_id is None
        wid = waiter_id or uuid.uuid4().hex
        body: dict[str, Any] = {
            "names": list(names),
            "slots": slots,
            "mode": mode,
            "priority": priority,
            "holder_kind": holder_kind,
            "holder_id": holder_id,
            "process": encode(process),
            "lease_seconds": lease_seconds,
            "waiter_id": None if owned and timeout == 0 else wid,
            "strict": strict,
        }
        if isinstance(timeout, bool) or not (timeout is None or isinstance(timeout, int | float)):
            raise exceptions.ValidationError(
                f"timeout_seconds must be a number or None, got {timeout!r}"
            )
        if timeout is not None and (timeout != timeout or timeout < 0):
            raise exceptions.ValidationError(f"timeout_seconds must be at least 0, got {timeout}")
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = False
        lost_answers = 0
        try:
            while True:
                hold = POLL_SECONDS
                if deadline is not None:
                    hold = max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))
                body["timeout"] = hold
                try:
                    answer = self.request(
                        "POST",
                        "/slots/acquire",
                        body=body,
                        # The server answers within ``hold``; allow for a busy moment.
                        timeout=hold + self.timeout_seconds,
                        idempotent=False,
                    )
                except AnswerLost:
                    # The server went away mid-request (it may be restarting). The
                    # lost answer may have been a grant: that lease is never renewed,
                    # so it expires and is reaped like a dead holder's; ask again
                    # (even a single attempt: it never got its answer).
                    lost_answers += 1
                    if lost_answers > 3:
                        raise
                    continue
                if answer["granted"]:
                    finished = True
                    return decode(SlotGrant, answer["grant"])
                wait = decode(SlotWait, answer["wait"])
                if not owned or (deadline is not None and time.monotonic() >= deadline):
                    finished = not owned
                    return wait
        finally:
            if owned and not finished and body["waiter_id"] is not None:
                # Timed out, failed or interrupted: leave the queue.
                with contextlib.suppress(exceptions.HeadwayError):
                    self.cancel_slot_wait(wid)

    def release_slots(self, lease_id: str) -> bool:
        def released_before(answer: Any) -> Any:
            # Sent again after a lost answer (a server crash): the first one most
            # likely released the lease, so "not found" now says nothing of a lease
            # lost to expiry. Saying "lost" would fail the holder's block for nothing.
            return {**answer, "intact": True}

        # Releasing twice is harmless (the second finds nothing), so retry freely.
        answer = self.request(
            "POST",
            "/slots/release",
            body={"lease_id": lease_id},
            idempotent=True,
            resent_answer=released_before,
        )
        return bool(answer["intact"])

    # -- workers -------------------------------------------------------------------
    def claim_flow_runs(
        self,
        worker_id: str,
        *,
        pool: str | None = None,
        queues: Sequence[str] | None = None,
        deployments: Sequence[str] | None = None,
        limit: int = 1,
        wait: float = 0.0,
    ) -> list[ClaimedRun]:
        """Claim runs: a request the server holds up to ``wait`` seconds; the runs' leases
        name this process."""
        wait = max(0.0, min(float(wait), 30.0))
        body = {
            "pool": pool,
            "queues": None if queues is None else list(queues),
            "deployments": None if deployments is None else list(deployments),
            "limit": limit,
            "wait": wait,
            "process": to_jsonable(current_process()),
        }
        rows = self.request(
            "POST",
            f"/workers/{_id(worker_id)}/claim",
            body=body,
            timeout=wait + self.timeout_seconds,
            # A lost answer may have claimed runs: they come back when their lease ends.
            idempotent=False,
        )
        return [decode(ClaimedRun, r) for r in rows]


def _id(value: str) -> str:
    """A run id as one path segment (whatever the caller passed, the URL stays valid)."""
    return quote(str(value), safe="")
