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
        value = problem.get("input")
        if problem["type"] == "missing":
            message = "required field is missing"
        elif problem["type"] in ("model_type", "dict_type") and not isinstance(value, dict):
            message = f"expected a mapping of names to values, got {_json_type(value)}"
        elif problem["type"] != "value_error" and isinstance(value, _SCALARS):
            hint = _type_hint(problem["type"], value)
            message = f"invalid value {_shown(value)}: {message[:1].lower()}{message[1:]}{hint}"
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)


def _shown(value: Any) -> str:
    """Return a rejected scalar as a manifest writes it: null, true and false, or Python's repr otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _type_hint(error_type: str, value: Any) -> str:
    """Say how to write a value that has the wrong type because of quoting, as YAML users often do."""
    if error_type == "int_type" and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return "; write the number without quotes"
    if error_type == "bool_type" and isinstance(value, str):
        return "; write true or false without quotes"
    if error_type == "string_type" and isinstance(value, (bool, int, float)):
        return f"; quote it to make it text: \"{_shown(value)}\""
    return ""


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
