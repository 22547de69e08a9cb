"""headway's errors: one tree, one root.

::

    HeadwayError
    ├── ConfigurationError            a HEADWAY_* setting is invalid
    │   └── MissingExtra              (also an ImportError) an optional extra is not installed
    ├── ValidationError               bad input from a user (CLI 2, HTTP 422)
    │   └── ScheduleError             its times cannot be computed, or not at a bounded cost
    ├── ObjectNotFound                unknown run, limit, pool, deployment (CLI 2, HTTP 404)
    ├── ObjectAlreadyExists           a name already taken (CLI 2, HTTP 409)
    ├── ConflictError                 refused because of current state (CLI 2, HTTP 409)
    │   └── IllegalTransition         a state change the state machine forbids
    ├── StoreError                    the store could not be reached or used (CLI 1, HTTP 503)
    │   ├── StoreUnavailable          ...and nothing was written: the call may be made again
    │   ├── OutcomeUnknown            the connection failed under a statement that commits by
    │   │                             itself: it may or may not have (the store tells by the lease)
    │   ├── AnswerLost                the connection to the server failed after a request was
    │   │                             sent: the server may have acted on it
    │   ├── StoreTooNew               a newer headway upgraded the schema (CLI 2, HTTP 503)
    │   └── StoreNotUsable            not a usable headway database: damaged, or another
    │                                 application's (CLI 2, HTTP 503); nothing is written to it
    ├── ConcurrencySlotAcquisitionError   a slot could not be taken (strict unknown name, ...)
    │   ├── AcquireConcurrencySlotTimeoutError  (also a TimeoutError) not granted in time
    │   ├── LimitClosed               refused: a limit of 0 admits nothing until it is raised
    │   └── RunEnded                  refused: the task run, or its flow run, ended or is cancelling
    ├── LeaseLostError                a held lease expired or was reaped while its holder lived
    ├── MissingContextError           a run-only call (get_run_logger) made outside any run
    ├── CodeUnavailable               a worker cannot find or fetch a deployment's code
    ├── RunFailed                     base of what a flow/task run raises on failure
    │   ├── TaskRunTimeout            (also a TimeoutError) a run passed timeout_seconds
    │   └── RunCancelled              the run was cancelled
    └── ServerError                   the HTTP server answered with an unexpected error

Domain errors map to HTTP status codes in one place (``server``) and to CLI exit
codes in one place (``cli``); ``http_status`` here is the single source of both.

An error crosses HTTP by its class name; :data:`BY_NAME` lists every class of the
tree by name, so the HTTP client raises the class the server raised whatever
modules the calling process happened to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class HeadwayError(Exception):
    """Root of every error headway raises on purpose."""

    http_status: int = 500
    exit_code: int = 1


class ConfigurationError(HeadwayError):
    """A ``HEADWAY_*`` setting has an invalid value."""

    exit_code = 2


class MissingExtra(ConfigurationError, ImportError):
    """A feature needs an optional extra that is not installed (``headway[postgres]``, ...).

    Its message is one line naming the command that installs the extra.
    """

    def __init__(self, feature: str, extra: str, missing: str | None = None) -> None:
        self.feature = feature
        self.extra = extra
        #: The module that could not be imported.
        self.missing = missing
        super().__init__(f"{feature} needs an optional extra: pip install 'headway[{extra}]'")


class ValidationError(HeadwayError, ValueError):
    """User input is invalid; nothing was changed."""

    http_status = 422
    exit_code = 2


class ScheduleError(ValidationError):
    """A schedule's times cannot be computed (impossible, too costly, past year 9999)."""


class ObjectNotFound(HeadwayError, LookupError):
    """The named run, limit, pool, queue or deployment does not exist."""

    http_status = 404
    exit_code = 2


class ObjectAlreadyExists(HeadwayError):
    """An object with that name already exists."""

    http_status = 409
    exit_code = 2


class ConflictError(HeadwayError):
    """The request conflicts with the object's current state; nothing was changed."""

    http_status = 409
    exit_code = 2


class IllegalTransition(ConflictError):
    """The state machine forbids this state change."""


class StoreError(HeadwayError):
    """The store could not be opened, migrated or reached."""

    http_status = 503


class StoreNotUsable(StoreError):
    """The store is not a headway database that can be used: damaged, or another application's.

    Making the call again will not help; the user must point headway at
    another database (or restore this one). headway writes nothing to it.
    """

    exit_code = 2


class StoreUnavailable(StoreError):
    """The store could not be reached, and nothing of the call was written.

    Raised when the connection failed before a transaction committed (a
    PostgreSQL restart, a network drop): making the same call again is safe, and
    the HttpClient does so by itself while its retry window lasts.
    """


class OutcomeUnknown(StoreError):
    """The connection failed under a statement that commits by itself: it may or may not have.

    The store raises it where it can find out afterwards (a lease's own id tells
    whether the acquire committed); it reaches a caller only when it cannot.
    """


class AnswerLost(StoreError):
    """The connection failed after a request was sent: the server may have acted on it.

    The HttpClient sends again only what is safe to repeat; otherwise it raises
    this, and the caller decides (a lost claim's runs come back when their lease ends).
    """


class StoreTooNew(StoreError):
    """The store's schema is at a revision newer than this headway knows.

    A newer headway upgraded it; this one refuses to use it rather than write
    rows without the columns it does not know about. Upgrade headway.
    """

    exit_code = 2


class ConcurrencySlotAcquisitionError(HeadwayError):
    """Concurrency slots could not be acquired."""

    http_status = 409
    exit_code = 2


class AcquireConcurrencySlotTimeoutError(ConcurrencySlotAcquisitionError, TimeoutError):
    """Slots were not granted within ``timeout_seconds``."""

    http_status = 408


class LimitClosed(ConcurrencySlotAcquisitionError):
    """Slots were refused at once because a limit asked for is 0: it admits nothing.

    A limit of 0 is a kill switch (as in Prefect): nothing waits on it, every
    request fails until the limit is raised; holders from before keep their slots.
    """


class RunEnded(ConcurrencySlotAcquisitionError):
    """Slots were refused because the run asking for them has ended or is being cancelled.

    A task run whose flow run was cancelled while it waited is never granted:
    the task must end CANCELLED without running its code.
    """


class LeaseLostError(HeadwayError):
    """A lease expired or was reaped while its holder still ran (paused, clock jump)."""

    http_status = 410


class MissingContextError(HeadwayError, RuntimeError):
    """Called outside a flow or task run, where it needs one (``get_run_logger``)."""


class CodeUnavailable(HeadwayError):
    """A deployment's code is not where the worker looked, or its repository cannot be fetched.

    The message is one line naming the path looked in (or the repository and ref).
    """


class RunFailed(HeadwayError):
    """A flow or task run ended in a failed state."""


class TaskRunTimeout(RunFailed, TimeoutError):
    """A flow or task run exceeded its ``timeout_seconds``."""


class RunCancelled(RunFailed):
    """A run was cancelled."""


class ServerError(HeadwayError):
    """The server answered with an error that has no better mapping."""


#: Every error class of the tree, by name: how an error that crossed HTTP (its
#: name in the body) becomes its own class again. Written out rather than found
#: through ``__subclasses__()``, which sees only the classes imported so far.
#: ``tests/unit/test_exceptions.py`` checks that the tree and this table agree.
BY_NAME: Mapping[str, type[HeadwayError]] = MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            HeadwayError,
            ConfigurationError,
            MissingExtra,
            ValidationError,
            ScheduleError,
            ObjectNotFound,
            ObjectAlreadyExists,
            ConflictError,
            IllegalTransition,
            StoreError,
            StoreUnavailable,
            OutcomeUnknown,
            AnswerLost,
            StoreTooNew,
            StoreNotUsable,
            ConcurrencySlotAcquisitionError,
            AcquireConcurrencySlotTimeoutError,
            LimitClosed,
            RunEnded,
            LeaseLostError,
            MissingContextError,
            CodeUnavailable,
            RunFailed,
            TaskRunTimeout,
            RunCancelled,
            ServerError,
        )
    }
)
