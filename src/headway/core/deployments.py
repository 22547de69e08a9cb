"""Deployment rules: names, limit names, collision strategies, concurrency keys, parameters.

Pure functions, no I/O: the store, the orchestrator, the SDK and the CLI all
validate with these, so a bad name, strategy, key template or parameter is
refused the same way wherever it comes from, before anything is written.

Limit names (the slot engine's scopes):

- a deployment: ``deployment:<flow>/<name>``, or ``deployment:<flow>/<name>:<key>``
  when it has a concurrency key (one limit per key value);
- a work pool: ``pool:<pool>``; a work queue: ``queue:<pool>/<queue>``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from headway.core.limits import LIMIT_MAX, validate_name
from headway.exceptions import ValidationError

ENQUEUE = "ENQUEUE"
CANCEL_NEW = "CANCEL_NEW"
CANCEL_IN_PROGRESS = "CANCEL_IN_PROGRESS"
#: What happens to a run that finds its deployment's limit full.
COLLISION_STRATEGIES = (ENQUEUE, CANCEL_NEW, CANCEL_IN_PROGRESS)

#: Longest flow, deployment, pool or queue name: the limit names built from
#: them must stay within the slot engine's 200 characters.
NAME_MAX = 60
#: Longest concurrency key value kept verbatim; longer ones are shortened with a hash.
KEY_MAX = 60
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class DeploymentSpec:
    """What ``serve()``, ``deploy()`` and ``headway deploy`` ask the orchestrator to register."""

    flow_name: str
    name: str
    #: ``path/to/file.py:flow_function``, what a worker runs: the path relative to
    #: the project root (resolved against each worker's working directory, or the
    #: root of ``code_repository``); an absolute path is used as it is.
    entrypoint: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: What the flow accepts (:func:`parameter_schema`); None: not checked.
    parameter_schema: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    work_pool: str | None = None
    work_queue: str | None = None
    paused: bool = False
    #: Schedules as dicts: ``{"cron": ..., "timezone": ...}``, ``{"interval": ...}``, ...
    schedules: tuple[dict[str, Any], ...] = ()
    concurrency_limit: int | None = None
    collision_strategy: str = ENQUEUE
    concurrency_key: str | None = None
    description: str = ""
    #: A git repository (URL or path) each worker checks out before a run.
    code_repository: str | None = None
    #: Its branch, tag or commit (None: the repository's default branch).
    code_ref: str | None = None


# -- names ------------------------------------------------------------------------------
def validate_object_name(name: object, what: str) -> str:
    """A flow, deployment, pool or queue name: 1-60 printable characters, no ``/``."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"{what} name must not be empty")
    if name != name.strip():
        raise ValidationError(f"{what} name {name!r} has leading or trailing spaces")
    if len(name) > NAME_MAX:
        raise ValidationError(f"{what} name is {len(name)} characters long; the maximum is 60")
    if "/" in name:
        raise ValidationError(f"{what} name {name!r} must not contain '/'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationError(f"{what} name {name!r} contains control characters")
    return name


def full_name(flow_name: str, name: str) -> str:
    """``<flow>/<name>``, both parts validated."""
    return f"{validate_object_name(flow_name, 'flow')}/{validate_object_name(name, 'deployment')}"


def split_full_name(value: object) -> tuple[str, str]:
    """``"flow/name"`` -> ``("flow", "name")``; a clear error for anything else."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValidationError(
            f"deployment name {value!r} must be <flow-name>/<deployment-name>"
            " (see `headway deployment ls`)"
        )
    flow, _, name = value.partition("/")
    return validate_object_name(flow, "flow"), validate_object_name(name, "deployment")


def deployment_limit_name(full: str, key: str | None = None) -> str:
    """The slot engine limit of a deployment (per key when it has one)."""
    return f"deployment:{full}" if key is None else f"deployment:{full}:{key}"


def pool_limit_name(pool: str) -> str:
    """The slot engine limit of a work pool."""
    return f"pool:{pool}"


def queue_limit_name(pool: str, queue: str) -> str:
    """The slot engine limit of a work queue."""
    return f"queue:{pool}/{queue}"


# -- limits and strategies --------------------------------------------------------------
def validate_concurrency_limit(
    value: object, what: str = "concurrency limit", *, minimum: int = 1
) -> int:
    """A limit on runs: a whole number of at least ``minimum`` (clear the limit to remove it).

    A deployment's limit starts at 1, as in Prefect; a work pool's or queue's may
    be 0 (``minimum=0``): its workers are given no runs, also as in Prefect.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise ValidationError(f"{what} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValidationError(
            f"{what} must be at least {minimum}, got {value}; clear the limit to remove it"
        )
    if value > LIMIT_MAX:
        raise ValidationError(f"{what} must be at most {LIMIT_MAX}, got {value}")
    return value


#: Most tags one run may be given beyond its deployment's (as the HTTP API bounds them).
RUN_TAGS_MAX = 100


def validate_run_tags(tags: Sequence[str] | None) -> tuple[str, ...]:
    """Tags given to one run: each a valid tag, in order, duplicates dropped."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        raise ValidationError("tags must be a list of strings, not one string")
    given = list(tags)
    if len(given) > RUN_TAGS_MAX:
        raise ValidationError(f"at most {RUN_TAGS_MAX} tags may be given, got {len(given)}")
    return tuple(dict.fromkeys(validate_name(t, "tag") for t in given))


def validate_strategy(value: object) -> str:
    """``ENQUEUE``, ``CANCEL_NEW`` or ``CANCEL_IN_PROGRESS`` (any case, ``-`` or ``_``)."""
    text = str(value).strip().upper().replace("-", "_") if isinstance(value, str) else None
    if text not in COLLISION_STRATEGIES:
        raise ValidationError(
            f"unknown collision strategy {value!r}; expected ENQUEUE, CANCEL_NEW or"
            " CANCEL_IN_PROGRESS"
        )
    return text


def validate_priority(value: object, what: str = "priority") -> int:
    """A run or queue priority: a whole number (higher goes first)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number, got {value!r}")
    if abs(value) > LIMIT_MAX:
        raise ValidationError(f"{what} must be between -{LIMIT_MAX} and {LIMIT_MAX}")
    return value


# -- concurrency keys -------------------------------------------------------------------
def key_fields(template: str) -> list[str]:
    """The parameter names a key template refers to (``"{customer_id}"`` -> ``[customer_id]``)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValidationError(f"invalid concurrency key template {template!r}: {exc}") from None
    names: list[str] = []
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        root = field_name.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ValidationError(
                f"concurrency key template {template!r} must name parameters,"
                " like '{customer_id}'"
            )
        names.append(root)
    return names


def validate_key_template(template: object, schema: Mapping[str, Any] | None = None) -> str:
    """A concurrency key template over the flow's parameters; checked against ``schema``."""
    if not isinstance(template, str) or not template.strip():
        raise ValidationError("concurrency key template must not be empty")
    names = key_fields(template)
    if not names:
        raise ValidationError(
            f"concurrency key template {template!r} names no parameter; use e.g. '{{customer_id}}'"
        )
    if schema is not None and not schema.get("var_keyword"):
        known = set(schema.get("names", ()))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValidationError(
                f"concurrency key template {template!r} refers to unknown parameter(s) "
                + ", ".join(repr(n) for n in unknown)
                + (f"; the flow takes {', '.join(sorted(known))}" if known else "")
            )
    return template


def render_key(template: str, parameters: Mapping[str, Any]) -> str:
    """The key of a run: the template filled from its parameters (shortened if long)."""
    try:
        value = template.format_map(dict(parameters))
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise ValidationError(
            f"cannot fill concurrency key template {template!r} from the run's parameters: {exc}"
        ) from None
    value = "".join(ch if ord(ch) >= 32 and ord(ch) != 127 else "?" for ch in value)
    if not value:
        value = "-"
    if len(value) > KEY_MAX:
        digest = hashlib.sha1(value.encode()).hexdigest()[:12]
        value = f"{value[: KEY_MAX - 13]}~{digest}"
    return value


# -- parameters -------------------------------------------------------------------------
def parameter_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """What a flow function accepts, as stored with its deployment."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return {"names": [], "required": [], "var_keyword": True}
    names: list[str] = []
    required: list[str] = []
    var_keyword = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
        elif p.kind is p.VAR_POSITIONAL:
            continue
        elif p.kind is p.POSITIONAL_ONLY:
            # Parameters are passed by name: a positional-only one cannot be given.
            if p.default is p.empty:
                required.append(p.name)
            names.append(p.name)
        else:
            names.append(p.name)
            if p.default is p.empty:
                required.append(p.name)
    return {"names": names, "required": required, "var_keyword": var_keyword}


def check_parameters(
    schema: Mapping[str, Any] | None, parameters: Mapping[str, Any], what: str
) -> None:
    """Refuse parameters the flow does not take, or missing required ones, naming them."""
    if not isinstance(parameters, Mapping):
        raise ValidationError(f"parameters of {what} must be a mapping of name to value")
    bad = [k for k in parameters if not isinstance(k, str)]
    if bad:
        raise ValidationError(f"parameter names of {what} must be strings, got {bad[0]!r}")
    try:
        json.dumps(dict(parameters))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"parameters of {what} must be JSON values: {exc}") from None
    if schema is None:
        return
    known = list(schema.get("names", ()))
    if not schema.get("var_keyword"):
        unknown = [k for k in parameters if k not in known]
        if unknown:
            takes = ", ".join(known) if known else "no parameters"
            raise ValidationError(
                f"{what} got unknown parameter(s) {', '.join(repr(k) for k in unknown)};"
                f" it takes {takes}"
            )
    missing = [k for k in schema.get("required", ()) if k not in parameters]
    if missing:
        raise ValidationError(
            f"{what} is missing required parameter(s) {', '.join(repr(k) for k in missing)}"
        )


def parse_param(text: str) -> tuple[str, Any]:
    """``"k=v"`` from the command line: ``v`` as JSON when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValidationError(f"invalid parameter {text!r}; use --param name=value")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def parse_entrypoint(entrypoint: object) -> tuple[str, str]:
    """``"path/to/file.py:flow_fn"`` -> ``("path/to/file.py", "flow_fn")``."""
    if not isinstance(entrypoint, str) or ":" not in entrypoint:
        raise ValidationError(
            f"invalid entrypoint {entrypoint!r}; use path/to/file.py:flow_function"
        )
    path, _, attr = entrypoint.rpartition(":")
    if not path or not attr.isidentifier():
        raise ValidationError(
            f"invalid entrypoint {entrypoint!r}; use path/to/file.py:flow_function"
        )
    return path, attr


#: Longest code repository URL and ref.
CODE_REPOSITORY_MAX = 4_000
CODE_REF_MAX = 400


def validate_code_source(repository: object, ref: object) -> tuple[str | None, str | None]:
    """A deployment's code source: a git repository (URL or path) and an optional ref.

    Neither may start with ``-`` (git would read it as an option) or hold
    whitespace or control characters; a ref needs a repository.
    """
    if repository is None:
        if ref is not None:
            raise ValidationError("a code ref needs a code repository")
        return None, None
    checked: list[str] = []
    for what, value, longest in (
        ("code repository", repository, CODE_REPOSITORY_MAX),
        ("code ref", ref, CODE_REF_MAX),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{what} must be a non-empty string")
        if len(value) > longest:
            raise ValidationError(f"{what} is longer than {longest} characters")
        if value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value):
            raise ValidationError(
                f"invalid {what} {value!r}: no leading '-', spaces or control characters"
            )
        checked.append(value)
    return checked[0], (checked[1] if len(checked) > 1 else None)


__all__ = [
    "CANCEL_IN_PROGRESS",
    "CANCEL_NEW",
    "COLLISION_STRATEGIES",
    "DEFAULT_QUEUE",
    "ENQUEUE",
    "RUN_TAGS_MAX",
    "DeploymentSpec",
    "check_parameters",
    "deployment_limit_name",
    "full_name",
    "key_fields",
    "parameter_schema",
    "parse_entrypoint",
    "parse_param",
    "pool_limit_name",
    "queue_limit_name",
    "render_key",
    "split_full_name",
    "validate_code_source",
    "validate_concurrency_limit",
    "validate_key_template",
    "validate_object_name",
    "validate_priority",
    "validate_run_tags",
    "validate_strategy",
]
