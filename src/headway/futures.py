"""Futures: what ``task.submit()`` and ``task.map()`` return.

A :class:`TaskFuture` is done when its task run reached a final state.
``future.result()`` waits and returns the task's value (or raises its
exception); ``future.state`` is the run's current state; ``await future`` works
in async code.

Waiting never deadlocks a pool: when a worker thread waits on a task that no
worker has started yet, it claims that task and runs it itself. A pool of one
thread can therefore run a task that submits tasks and waits on them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from headway._engine.tracking import cancelled_state, state_result
from headway.core.states import State

if TYPE_CHECKING:
    from headway._engine.tracking import TaskRunTracker

R = TypeVar("R")

# Guards the one-time completion of a future and its callback list.
_done_lock = threading.Lock()
_DONE: list[Callable[[Any], None]] = []

# Set in worker threads of a pool: only they run unstarted tasks while waiting,
# so a waiting flow (or plain) thread never adds to a runner's concurrency.
_worker = threading.local()


def in_worker_thread() -> bool:
    """True in a thread that belongs to a task runner's pool."""
    return getattr(_worker, "active", False)


def mark_worker_thread() -> None:
    """Mark the current thread as a pool worker (called by task runners)."""
    _worker.active = True


class TaskFuture(Generic[R]):
    """The eventual outcome of a submitted task run."""

    __slots__ = ("_callbacks", "_claim", "_done", "_final", "_owner", "_tracker", "_work")

    def __init__(self, tracker: TaskRunTracker, work: Callable[[TaskFuture[R]], None] | None):
        self._tracker = tracker
        # ``work`` runs the task in the calling thread; whoever pops ``_claim``
        # first (a pool worker, a waiting worker, or cancel()) owns the run.
        self._work = work
        self._claim = [True] if work is not None else []
        self._final: State | None = None
        # Held until the future is done; waiters acquire and release it.
        self._done = threading.Lock()
        self._done.acquire()
        self._callbacks: list[Callable[[TaskFuture[R]], None]] | None = None
        # The flow run's futures-not-done-yet, which this one leaves when done.
        self._owner: dict[str, TaskFuture[Any]] | None = None

    # -- identity and state ------------------------------------------------------------
    @property
    def task_run_id(self) -> str:
        """The id of the task run."""
        return self._tracker.id

    @property
    def state(self) -> State:
        """The task run's current state (its final state once done)."""
        final = self._final
        return final if final is not None else self._tracker.state

    def done(self) -> bool:
        """True once the task run reached a final state."""
        return self._final is not None

    # -- waiting -----------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run is done (or ``timeout`` seconds pass); True when done."""
        if self._final is not None:
            return True
        if self._claim and in_worker_thread() and self.run_here():
            return True
        lock = self._done
        if lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            lock.release()
            return True
        return False

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task's return value; raises its exception if it failed.

        ``TimeoutError`` when the run is not done within ``timeout`` seconds
        (the run goes on). With ``raise_on_failure=False`` a failed run's
        exception is returned instead of raised.
        """
        if not self.wait(timeout):
            raise TimeoutError(f"task run {self._tracker.name!r} is not done after {timeout} s")
        final = self._final
        assert final is not None
        result: R = state_result(final, raise_on_failure)
        return result

    def __await__(self) -> Any:
        return self._wait_async().__await__()

    async def _wait_async(self) -> R:
        await self._wait_async_quietly()
        return self.result()

    async def _wait_async_quietly(self) -> None:
        """Wait without blocking the event loop (and without raising the run's error)."""
        if self._final is not None:
            return
        if self._claim and in_worker_thread() and self.run_here():
            # This pool thread's loop serves only the awaiting task: running the
            # unstarted task here is what keeps a one-thread pool from deadlocking.
            return
        # Only when awaited: asyncio stays out of a sync program's cold start.
        import asyncio

        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def wake(_: TaskFuture[R]) -> None:
            loop.call_soon_threadsafe(_resolve_waiter, waiter)

        self.add_done_callback(wake)
        await waiter

    def add_done_callback(self, fn: Callable[[TaskFuture[R]], None]) -> None:
        """Call ``fn(future)`` once the run is done (at once if it already is)."""
        with _done_lock:
            if self._callbacks is not _DONE:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)

    # -- running and completing (task runners and the engine) ---------------------------
    def run_here(self) -> bool:
        """Run the task in this thread unless someone else already claimed it."""
        try:
            self._claim.pop()
        except IndexError:
            return False
        work = self._work
        assert work is not None
        work(self)
        return True

    def cancel(self) -> bool:
        """Cancel a run that has not started; True when it will never run."""
        try:
            self._claim.pop()
        except IndexError:
            return False
        self._tracker.set_state(cancelled_state("cancelled before it started"))
        self.set_final(self._tracker.state)
        return True

    def set_final(self, state: State) -> None:
        """Mark the future done with ``state`` (only the first call counts)."""
        with _done_lock:
            if self._final is not None:
                return
            self._final = state
            callbacks, self._callbacks = self._callbacks, _DONE
        owner = self._owner
        if owner is not None:
            owner.pop(self._tracker.id, None)
        self._done.release()
        if callbacks:
            for fn in callbacks:
                fn(self)

    def __repr__(self) -> str:
        return f"TaskFuture({self._tracker.name!r}, {self.state!r})"


def _resolve_waiter(waiter: Any) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FutureList(list[TaskFuture[R]]):
    """The futures of ``task.map()``, in input order."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every run; True when all are done within ``timeout``."""
        return not wait(self, timeout).not_done

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """Every run's result, in input order (the first failure raises)."""
        if not self.wait(timeout):
            raise TimeoutError(f"{len(self)} mapped task runs are not all done after {timeout} s")
        return [f.result(raise_on_failure=raise_on_failure) for f in self]


class DoneAndNotDone(NamedTuple):
    """What :func:`wait` returns."""

    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]


def wait(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> DoneAndNotDone:
    """Wait until every future is done or ``timeout`` seconds passed in total."""
    pending = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not future.wait(remaining):
            break
    done = {f for f in pending if f.done()}
    return DoneAndNotDone(done, {f for f in pending if not f.done()})


# -- futures inside task arguments ---------------------------------------------------------
_CONTAINERS = (list, tuple, dict, set, frozenset)


def iter_futures(value: Any) -> Iterator[TaskFuture[Any]]:
    """Every future in ``value``, looking inside lists, tuples, dicts and sets."""
    if isinstance(value, TaskFuture):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_futures(item)
    elif isinstance(value, _CONTAINERS):
        for item in value:
            yield from iter_futures(item)


def has_futures(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether any argument is, or contains, a future (cheap when none is a container)."""
    for value in args:
        if isinstance(value, (TaskFuture, *_CONTAINERS)) and next(iter_futures(value), None):
            return True
    for value in kwargs.values():
        if isinstance(value, (TaskFuture, *_CONTAINERS)) and next(iter_futures(value), None):
            return True
    return False


def resolve_futures(value: Any) -> Any:
    """``value`` with every (done) future replaced by its result; containers are rebuilt."""
    if isinstance(value, TaskFuture):
        return value.result()
    if isinstance(value, dict):
        return type(value)({k: resolve_futures(v) for k, v in value.items()})
    if isinstance(value, tuple):
        items = [resolve_futures(v) for v in value]
        if hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, _CONTAINERS):
        return type(value)(resolve_futures(v) for v in value)
    return value


__all__ = ["DoneAndNotDone", "FutureList", "TaskFuture", "wait"]
