"""Field names for the camelCase and alias spellings in patches.

A manifest may spell a field `restartPolicy` or `env`; validation maps those to `restart_policy`
and `envs`. A patch applies to the stored object, whose keys are the field names, so a patch
written with another spelling would add a second key next to the field instead of changing it.
These functions rewrite a patch's keys (merge patch) or paths (JSON patch) to the field names
first, level by level, following the models that describe each level.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import AliasChoices, BaseModel
from pydantic.alias_generators import to_camel

from skyshift_core.errors import InvalidError


def field_names(model: type[BaseModel]) -> dict[str, str]:
    """Map every accepted spelling of each field of `model` (name, camelCase, aliases) to the field name."""
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        names[name] = name
        names.setdefault(to_camel(name), name)
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            choices = alias.choices
        elif isinstance(alias, str):
            choices = [alias]
        else:
            choices = []
        for choice in choices:
            if isinstance(choice, str):
                names.setdefault(choice, name)
    return names


def _shape(annotation: Any) -> tuple[str, Any]:
    """Classify a field annotation: ("model", M), ("list", item), ("dict", value) or ("other", None)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for argument in typing.get_args(annotation):
            shape = _shape(argument)
            if shape[0] != "other":
                return shape
        return "other", None
    if origin is typing.Annotated:
        return _shape(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset):
        arguments = typing.get_args(annotation)
        return ("list", arguments[0]) if arguments else ("other", None)
    if origin is dict:
        arguments = typing.get_args(annotation)
        return ("dict", arguments[1]) if len(arguments) == 2 else ("other", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    return "other", None


def _canonical_value(annotation: Any, value: Any, where: str) -> Any:
    kind, inner = _shape(annotation)
    if kind == "model":
        return canonical_merge_patch(inner, value, where)
    if kind == "list" and isinstance(value, list):
        return [_canonical_value(inner, item, f"{where}[{index}]") for index, item in enumerate(value)]
    if kind == "dict" and isinstance(value, dict):
        return {key: _canonical_value(inner, item, f"{where}.{key}") for key, item in value.items()}
    return value


def canonical_merge_patch(model: type[BaseModel], patch: Any, where: str = "") -> Any:
    """Return a JSON merge patch for `model` with every key spelt as its field name.

    Raises InvalidError when one object of the patch spells a field twice (`envs` and `env`).
    Keys that are not fields stay as they are, so validation reports them."""
    if not isinstance(patch, dict):
        return patch
    names = field_names(model)
    result: dict[str, Any] = {}
    spelt: dict[str, str] = {}
    for key, value in patch.items():
        name = names.get(key, key)
        path = f"{where}.{name}" if where else name
        if name in spelt:
            raise InvalidError(f"invalid patch: it sets {path} twice, as '{spelt[name]}' and '{key}'; keep one of them")
        spelt[name] = key
        field = model.model_fields.get(name)
        result[name] = _canonical_value(field.annotation, value, path) if field is not None else value
    return result


def _resolve(model: type[BaseModel], pointer: str) -> tuple[str, Any]:
    """Return `pointer` with each field spelt as its field name, and the annotation of what it points at.

    The annotation is None when the pointer leaves the fields that the models describe."""
    if not pointer:
        return pointer, model
    if not pointer.startswith("/"):
        return pointer, None
    segments = pointer[1:].split("/")
    annotation: Any = model
    for index, segment in enumerate(segments):
        kind, inner = _shape(annotation)
        if kind == "model":
            name = field_names(inner).get(segment.replace("~1", "/").replace("~0", "~"))
            if name is None:
                return "/" + "/".join(segments), None
            segments[index] = name.replace("~", "~0").replace("/", "~1")
            annotation = inner.model_fields[name].annotation
        elif kind in ("list", "dict"):
            annotation = inner
        else:
            return "/" + "/".join(segments), None
    return "/" + "/".join(segments), annotation


def canonical_pointer(model: type[BaseModel], pointer: str) -> str:
    """Return a JSON patch path (an RFC 6901 pointer) with each field spelt as its field name."""
    return _resolve(model, pointer)[0]


def canonical_json_patch(model: type[BaseModel], operations: Any) -> Any:
    """Return a JSON patch for `model` whose pointers and written values spell fields by their names."""
    if not isinstance(operations, list):
        return operations
    result = []
    for operation in operations:
        if isinstance(operation, dict):
            operation = dict(operation)
            if isinstance(operation.get("from"), str):
                operation["from"] = canonical_pointer(model, operation["from"])
            if isinstance(operation.get("path"), str):
                operation["path"], annotation = _resolve(model, operation["path"])
                if annotation is not None and isinstance(operation.get("value"), (dict, list)):
                    operation["value"] = _canonical_value(annotation, operation["value"], operation["path"])
        result.append(operation)
    return result
