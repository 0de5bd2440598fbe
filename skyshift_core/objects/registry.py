"""The table of kinds: how each is named on the command line, in API paths and in etcd keys."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from skyshift_core.errors import InvalidError, NotFoundError
from skyshift_core.objects.base import suggest
from skyshift_core.objects.cluster import Cluster
from skyshift_core.objects.job import Job
from skyshift_core.objects.meta import Object
from skyshift_core.objects.misc import Event, FilterPolicy, Link, Namespace, Role, User
from skyshift_core.objects.service import Endpoints, Service

_KINDS: dict[str, type[Object]] = {}


def register_kind(model: type[Object]) -> None:
    """Add a kind; plugins call this through the `register_kinds` hook."""
    kind = model.model_fields["kind"].default
    for existing in _KINDS.values():
        if existing.plural == model.plural and existing is not model:
            raise ValueError(f"kind {kind!r} uses plural {model.plural!r}, already taken by {existing.__name__}")
    _KINDS[kind] = model


for _model in (Cluster, Job, Service, Endpoints, Link, FilterPolicy, Namespace, Role, User, Event):
    register_kind(_model)


def kinds() -> dict[str, type[Object]]:
    return dict(_KINDS)


def by_plural(plural: str) -> type[Object]:
    for model in _KINDS.values():
        if model.plural == plural:
            return model
    raise NotFoundError(
        f"unknown resource type {plural!r}{suggest(plural, [m.plural for m in _KINDS.values()])}; "
        f"known: {', '.join(sorted(m.plural for m in _KINDS.values()))}"
    )


def resolve_kind(text: str) -> type[Object]:
    """Find a kind by plural, singular, short name or kind name, case-insensitively."""
    wanted = text.lower()
    for kind, model in _KINDS.items():
        if wanted in (kind.lower(), model.plural, model.singular, *model.short_names):
            return model
    names = sorted(model.plural for model in _KINDS.values())
    raise InvalidError(f"unknown resource type {text!r}{suggest(wanted, names)}; known types: {', '.join(names)}")


# Pydantic's own checks (types, ranges, choices) do not repeat the value they rejected; SkyShift's
# validators (type value_error) name it in their message already.
_SCALARS = (str, int, float, bool, type(None))


def validation_message(error: ValidationError, prefix: str = "") -> str:
    """Flatten a pydantic error into one line per problem, each with the field path and, for a
    rejected scalar, the value given."""
    lines = []
    for problem in error.errors(include_url=False):
        path = ".".join(str(part) for part in problem["loc"])
        path = f"{prefix}.{path}" if prefix and path else (prefix or path)
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            message = "required field is missing"
        elif problem["type"] != "value_error" and isinstance(problem.get("input"), _SCALARS):
            message = f"invalid value {problem['input']!r}: {message[:1].lower()}{message[1:]}"
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)


def parse_object(data: Any, expected: type[Object] | None = None) -> Object:
    """Validate a manifest into its kind's model; raise InvalidError that names each bad field."""
    if not isinstance(data, dict):
        raise InvalidError(f"expected an object with kind, metadata and spec, got {type(data).__name__}")
    kind = data.get("kind")
    if expected is not None and kind is None:
        data = {**data, "kind": expected.model_fields["kind"].default}
        kind = data["kind"]
    if not isinstance(kind, str) or not kind:
        raise InvalidError(f"missing field 'kind'; expected one of {', '.join(sorted(_KINDS))}")
    model = _KINDS.get(kind)
    if model is None:
        raise InvalidError(f"unknown kind {kind!r}{suggest(kind, sorted(_KINDS))}; known kinds: {', '.join(sorted(_KINDS))}")
    if expected is not None and model is not expected:
        expected_kind = expected.model_fields["kind"].default
        raise InvalidError(f"kind {kind!r} does not match the request path, which is for {expected_kind}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidError(f"invalid {kind}: {validation_message(error)}") from error
