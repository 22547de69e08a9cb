"""Interrupting running code as Python allows: at a timeout, or when its flow run is cancelled.

A thread cannot be killed safely in Python; it can be asked to raise an
exception at its next bytecode (``PyThreadState_SetAsyncExc``). A blocking C
call (a long ``time.sleep``, a socket read) finishes first. A :class:`Body` is
one run of a task's (or a timed flow's) code that may be interrupted that way:

- **Only the body is interrupted.** A gate held while deciding to interrupt,
  and by the body as it ends, makes sure the exception is only ever sent to a
  body still running, and at most once; an exception sent but not yet raised
  when the body ends is withdrawn then, so none is raised later in the
  engine's code after it (or in the code that called a flow).
- **Bodies nest.** A flow's own code is a body, and a task or subflow it calls
  directly runs its body inside it, in the same thread (or the same asyncio
  task). An interrupt raised there unwinds every body between: it belongs to
  the outermost one that was interrupted, and each engine on the way asks
  :func:`enclosing_interrupted` (or :meth:`AsyncBody.owns_cancel`) before it
  handles the exception as its own run's end instead of letting it go on.
- **Slots follow the body** (see :mod:`headway.concurrency._scopes`): a ``with
  concurrency()`` block exits at the interrupt and releases; slots the body
  took and left held (an interrupt between a grant and its ``with``) are
  released once the body has ended, never earlier; slots held around it (the
  task run's tag slots) are released by the engine after it, in the same
  thread. A body blocked in C code keeps its slots until the call returns.

Cancellation reaches bodies two ways. The flow engine of the run interrupts
them when the run ends interrupted (a worker's SIGTERM, Ctrl-C): the bodies of
the run in this process end at once. Elsewhere (a task on a Dask worker or in a
process-pool process, a flow run in a script that someone cancels with
``headway flow-run cancel``) no signal comes: a watch thread reads the flow run
of every body that has run for :data:`CHECK_SECONDS`, once per that period and
flow run, and interrupts the run's bodies when it is being cancelled or has
ended. The flow's own code is one of them: a script's flow stops in its main
thread too. A worker's run process leaves the watch out (:func:`signalled_by_worker`):
its worker watches the run and signals it.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from headway.concurrency._scopes import BodyScope

if TYPE_CHECKING:
    from headway.client.base import Client

T = TypeVar("T")

#: The name of the CANCELLED state of a task run interrupted by its flow run's cancel.
INTERRUPTED = "Interrupted"

#: How long a body runs before the watch asks the store about its flow run, and
#: how often it asks again (per flow run, whatever the number of its bodies).
CHECK_SECONDS = 1.0


class TaskRunCancelled(BaseException):
    """Raised inside a running task's code when its flow run is cancelled.

    A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` in the
    task does not swallow it, while ``finally`` and ``with`` blocks run (and give
    their slots back).
    """


class Body:
    """One run of user code that may be interrupted (see the module docstring)."""

    __slots__ = (
        "_fn",
        "_gate",
        "_ident",
        "_outer",
        "_running",
        "_sent",
        "depth",
        "interrupted",
        "scope",
        "started",
    )

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._gate = threading.Lock()
        self._ident: int | None = None
        #: The body this one runs inside, in the same thread (None: outermost).
        self._outer: Body | None = None
        #: How many bodies it runs inside (interrupts go to the outer ones first).
        self.depth = 0
        self._running = False
        self._sent = False
        #: The exception type sent to the body (None while not interrupted).
        self.interrupted: type[BaseException] | None = None
        self.scope = BodyScope()
        #: ``time.monotonic()`` when the body started (0.0 before).
        self.started = 0.0

    def run(self) -> Any:
        """Run the body in this thread; raises what it raises (the interrupt included).

        A body interrupted before it started raises the interrupt without running.
        """
        with self._gate:
            if self.interrupted is not None:
                raise self.interrupted()
            self._ident = threading.get_ident()
            self._outer = outer = getattr(_innermost, "body", None)
            self.depth = 0 if outer is None else outer.depth + 1
            self._running = True
            self.started = time.monotonic()
        _innermost.body = self
        try:
            return self.scope.run(self._guarded)
        finally:
            try:
                self._end()
            except BaseException:
                # Raised as the body ended (its own interrupt, sent just before,
                # or an enclosing body's): end it all the same, and let it go on.
                self._end()
                raise
            if self.interrupted is not None:
                _to_the_end(self.scope.release_leftovers)

    def _guarded(self) -> Any:
        try:
            return self._fn()
        finally:
            self._end()

    def _end(self) -> None:
        # Idempotent; in the body's thread. Past the gate nothing is sent to it,
        # and what was sent but not raised yet is withdrawn, unless an enclosing
        # body was interrupted meanwhile: the thread's pending interrupt is then
        # that body's to raise.
        with self._gate:
            if self._running:
                self._running = False
                if self._sent:
                    with _send_lock:
                        if not _interrupted_from(self._outer):
                            _raise_in_thread(self._ident, None)
        if getattr(_innermost, "body", None) is self:
            _innermost.body = self._outer

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` in the body at its next bytecode; False if it had ended
        or was interrupted already. A body not started yet never starts."""
        with self._gate:
            if self.interrupted is not None:
                return False
            if not self._running:
                if self._ident is not None:  # ended
                    return False
                self.interrupted = exc_type  # not started: it raises at once
                return True
            # (From the body's own thread, in a signal handler: raised as it returns.)
            with _send_lock:
                self.interrupted = exc_type
                # A body around it interrupted already: that exception unwinds this one.
                if not _interrupted_from(self._outer):
                    self._sent = True
                    _raise_in_thread(self._ident, exc_type)
            return True


#: The innermost body started in each thread (walk ``_outer`` for the others).
_innermost = threading.local()
#: Held while an interrupt is sent, and while an ending body withdraws its own.
_send_lock = threading.Lock()


def _interrupted_from(body: Body | None) -> bool:
    # Whether ``body`` or a body it runs inside, still running, was interrupted.
    while body is not None:
        if body._running and body.interrupted is not None:
            return True
        body = body._outer
    return False


def enclosing_interrupted() -> bool:
    """Whether a body still running in this thread was interrupted.

    Asked where an interrupt is caught, once the body it came out of has ended:
    if so, the exception is an enclosing body's (a flow whose own code called
    this task or subflow), and must go on to it rather than end this run alone.
    """
    return _interrupted_from(getattr(_innermost, "body", None))


class AsyncBody:
    """The awaited code of an async task or flow run: interrupted by cancelling its asyncio task.

    Made (and used as a context manager) in the run's own coroutine, around the
    one ``await`` of its code. The cancel is sent through the event loop and
    applied only if that ``await`` is still going: never to the engine's code
    after it (giving slots back, say). Bodies that nest in one asyncio task (a
    flow awaiting its task's code) send it one cancel at a time; the body that
    owns the ``CancelledError`` takes back every cancel sent (``uncancel``).
    """

    __slots__ = (
        "_loop",
        "_outer",
        "_running",
        "_sent",
        "_task",
        "depth",
        "interrupted",
        "started",
    )

    def __init__(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._outer: AsyncBody | None = None
        self.depth = 0
        self._running = False
        #: Cancels sent to the asyncio task by this body and those around it, shared.
        self._sent = [0]
        self.interrupted: type[BaseException] | None = None
        self.started = 0.0

    def __enter__(self) -> AsyncBody:
        outer = _awaited.get()
        while outer is not None and not (outer._running and outer._task is self._task):
            outer = outer._outer
        if outer is not None:
            self._outer = outer
            self._sent = outer._sent
            self.depth = outer.depth + 1
        self._running = True
        self.started = time.monotonic()
        _awaited.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False  # in the loop's thread: no cancel can come in between
        if _awaited.get() is self:
            _awaited.set(self._outer)

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        """Cancel the awaited code (``asyncio.CancelledError`` there)."""
        if self.interrupted is not None or self._task is None or not self._running:
            return False
        self.interrupted = exc_type
        try:
            self._loop.call_soon_threadsafe(self._cancel_if_running)
        except RuntimeError:  # the loop is closed: the code has ended
            return False
        return True

    def _cancel_if_running(self) -> None:
        # A cancel already on its way unwinds this body too: one at a time.
        if self._running and self._task is not None and self._sent[0] == 0:
            self._sent[0] += 1
            self._task.cancel()

    def owns_cancel(self) -> bool:
        """Whether a ``CancelledError`` out of this (ended) body is its own interrupt,
        rather than an enclosing body's or someone else's cancel of the task.

        If so, the cancels sent are taken back (the task goes on, to record the end).
        """
        if self.interrupted is None or self._sent[0] == 0:
            return False  # (not sent yet: the task was cancelled by someone else)
        outer = self._outer
        while outer is not None:
            if outer._running and outer.interrupted is not None:
                return False
            outer = outer._outer
        if self._task is not None:
            while self._sent[0] > 0:
                self._sent[0] -= 1
                self._task.uncancel()
        return True


_awaited: ContextVar[AsyncBody | None] = ContextVar("headway_awaited_body", default=None)


def _to_the_end(cleanup: Callable[[], object]) -> None:
    # The interrupt is sent at most once, while the body runs; should it land
    # only once the body has ended, in the cleanup, the cleanup runs again.
    try:
        cleanup()
    except BaseException:
        cleanup()


def _raise_in_thread(ident: int | None, exc_type: type[BaseException] | None) -> None:
    # Asks the interpreter to raise exc_type in that thread at its next bytecode
    # (None: to forget the one it was asked to raise and has not raised yet).
    if ident is None:
        return
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exc)


# -- cancellation --------------------------------------------------------------------------
class _Run:
    """The bodies (and flow engines' callbacks) of one flow run in this process."""

    __slots__ = ("bodies", "callbacks", "checked", "client")

    def __init__(self, client: Client | None) -> None:
        self.client = client
        self.bodies: set[Body | AsyncBody] = set()
        self.callbacks: set[Callable[[], None]] = set()
        self.checked = 0.0


_lock = threading.Lock()
_runs: dict[str, _Run] = {}
_wake = threading.Event()
_watch_thread: threading.Thread | None = None
_watch_enabled = True


def signalled_by_worker() -> None:
    """This process runs one flow run for a worker, which watches it and signals
    it when it is cancelled: no store reads here for that."""
    global _watch_enabled
    _watch_enabled = False


class cancellable:  # a lower-case name: used as ``with cancellable(...)``
    """While inside, ``body`` is interrupted when flow run ``flow_run_id`` is cancelled.

    A class, not a generator-based context manager: every task run with a flow
    run passes through it, and this costs a fraction of one.
    """

    __slots__ = ("_body", "_flow_run_id", "_run")

    def __init__(
        self, body: Body | AsyncBody, flow_run_id: str | None, client: Client | None
    ) -> None:
        self._body = body
        self._flow_run_id = flow_run_id
        self._run: _Run | None = None
        if flow_run_id is None:
            return
        with _lock:
            run = _runs.get(flow_run_id)
            if run is None:
                run = _runs[flow_run_id] = _Run(client)
            elif run.client is None:
                run.client = client
            run.bodies.add(body)
        self._run = run
        if not _wake.is_set():
            _ensure_watch()

    def __enter__(self) -> Body | AsyncBody:
        return self._body

    def __exit__(self, *exc: object) -> None:
        run = self._run
        if run is None:
            return
        with _lock:
            run.bodies.discard(self._body)
            if not run.bodies and not run.callbacks and _runs.get(self._flow_run_id) is run:  # type: ignore[arg-type]
                del _runs[self._flow_run_id]  # type: ignore[arg-type]


def on_cancel(flow_run_id: str, client: Client, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` if the watch finds flow run ``flow_run_id`` cancelled; the
    function that forgets it. (The flow engine stops starting tasks then.)"""
    with _lock:
        run = _runs.get(flow_run_id)
        if run is None:
            run = _runs[flow_run_id] = _Run(client)
        run.callbacks.add(callback)

    def forget() -> None:
        with _lock:
            run.callbacks.discard(callback)
            if not run.bodies and not run.callbacks and _runs.get(flow_run_id) is run:
                del _runs[flow_run_id]

    return forget


def interrupt_flow_run(flow_run_id: str) -> int:
    """Interrupt every body of flow run ``flow_run_id`` in this process; how many."""
    with _lock:
        run = _runs.get(flow_run_id)
        bodies = list(run.bodies) if run is not None else []
    return _interrupt(bodies)


def interrupt_all() -> int:
    """Interrupt every body of every flow run in this process; how many."""
    with _lock:
        bodies = [body for run in _runs.values() for body in run.bodies]
    return _interrupt(bodies)


def _interrupt(bodies: list[Body | AsyncBody]) -> int:
    # Outer bodies first: by the time an inner one (a task the flow's code called)
    # handles its interrupt, it sees that the flow around it was interrupted too,
    # and lets the exception go on to it.
    bodies.sort(key=lambda body: body.depth)
    return sum(body.interrupt(TaskRunCancelled) for body in bodies)


def _ensure_watch() -> None:
    global _watch_thread
    if not _watch_enabled:
        return
    if _watch_thread is None or not _watch_thread.is_alive():
        with _lock:
            if _watch_thread is None or not _watch_thread.is_alive():
                _watch_thread = threading.Thread(
                    target=_watch, name="headway-cancel-watch", daemon=True
                )
                _watch_thread.start()
    _wake.set()


def _due() -> list[tuple[str, _Run]]:
    # Flow runs with a body running for CHECK_SECONDS, not asked about for as long.
    now = time.monotonic()
    due = []
    with _lock:
        for flow_run_id, run in _runs.items():
            if now - run.checked < CHECK_SECONDS:
                continue
            if any(b.started and now - b.started >= CHECK_SECONDS for b in run.bodies):
                run.checked = now
                due.append((flow_run_id, run))
        if not _runs:
            _wake.clear()
    return due


def _watch() -> None:
    while True:
        _wake.wait()
        time.sleep(CHECK_SECONDS / 2)
        for flow_run_id, run in _due():
            if _is_cancelled(flow_run_id, run.client):
                _cancel(flow_run_id, run)


def _is_cancelled(flow_run_id: str, client: Client | None) -> bool:
    from headway.core.states import StateType
    from headway.exceptions import HeadwayError

    try:
        if client is None:
            from headway.client.base import get_client

            client = get_client()
        state = client.read_flow_run(flow_run_id).state
    except HeadwayError:  # unknown here (a run of another store), or unreachable
        return False
    except Exception:  # never let the watch die: asked again next period
        return False
    return state.is_final or state.type is StateType.CANCELLING


def _cancel(flow_run_id: str, run: _Run) -> None:
    with _lock:
        callbacks = list(run.callbacks)
    for callback in callbacks:  # first: no task of the run starts from now on
        callback()
    interrupt_flow_run(flow_run_id)
