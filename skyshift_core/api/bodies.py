"""Request bodies: JSON or YAML manifests, and the three PATCH formats."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import jsonpatch
import yaml
from fastapi import Request
from pydantic import BaseModel

from skyshift_core import manifest_yaml
from skyshift_core.errors import (
    BadRequestError,
    InvalidError,
    RequestEntityTooLargeError,
    SkyShiftError,
    UnsupportedMediaTypeError,
)
from skyshift_core.objects.aliases import canonical_json_patch, canonical_merge_patch

JSON_TYPE = "application/json"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# Kubernetes clients send strategic merge patches by default; for SkyShift's objects, which
# have no list merge keys, it behaves as a JSON merge patch.
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH)

MAX_BODY_BYTES = 3 * 1024 * 1024  # etcd's default request limit is 1.5 MiB; leave room for encoding.
# Objects are stored as JSON that pydantic reads back, and its parser stops at about 200 levels.
# No manifest comes near this depth, so a deeper body is rejected before it can be stored.
MAX_NESTING = 100
# The hint names curl because its -d option sends application/x-www-form-urlencoded when no -H sets the type.
_CONTENT_TYPE_HINT = "set the Content-Type header, for example with curl: -H 'Content-Type: application/json'"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_manifest(request: Request) -> dict[str, Any]:
    """Parse a JSON or YAML body into a mapping, chosen by its Content-Type.

    A body without a Content-Type is read as JSON. A media type other than JSON and YAML raises
    UnsupportedMediaTypeError, as Kubernetes returns 415 for a body it cannot decode.
    """
    media = _media_type(request)
    if media not in ("", JSON_TYPE, *YAML_TYPES):
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Type {media!r} for an object body: send the object as {JSON_TYPE} "
            f"or application/yaml (also {', '.join(YAML_TYPES[1:])}); {_CONTENT_TYPE_HINT}"
        )
    raw = await request.body()
    check_body_size(raw)
    if not raw.strip():
        raise BadRequestError("request body is empty: send the object as JSON or YAML")
    try:
        if media in YAML_TYPES:
            data = manifest_yaml.load(raw, "request body")
        else:
            data = loads_json(raw, "request body")
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as error:
        if media in YAML_TYPES:
            raise BadRequestError(f"request body is not valid YAML: {error}") from error
        raise BadRequestError(
            f"request body is not valid JSON: {error}; for a YAML body, set Content-Type: application/yaml"
        ) from error
    check_storable(data, "request body", BadRequestError)
    if not isinstance(data, dict):
        raise BadRequestError(
            f"request body must be an object with kind, metadata and spec, got {json_type(data)}"
        )
    return data


def check_body_size(raw: bytes) -> None:
    """Reject a body over MAX_BODY_BYTES with 413, as Kubernetes does for a request that is too large."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestEntityTooLargeError(
            f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} bytes (3 MiB), and etcd stores "
            "at most 1.5 MiB per object: keep large data out of the object, in a volume or an image"
        )


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the member {repeated!r} appears twice in one object; keep one of them")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; JSON has no infinite or undefined numbers")


# An int64, which etcd and every integer field take, has at most 19 digits.
_MAX_INTEGER_DIGITS = 20


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INTEGER_DIGITS:
        raise ValueError(f"the integer {text[:12]}... has {digits} digits; integers here fit in 64 bits (19 digits)")
    return int(text)


def loads_json(raw: bytes | str, subject: str) -> Any:
    """Parse JSON, rejecting a member repeated in one object (as YAML bodies do), Python's NaN and
    Infinity extensions, integers beyond 64 bits and nesting too deep to parse.

    Raises ValueError with the reason, or BadRequestError when the nesting is too deep."""
    try:
        return json.loads(
            raw, object_pairs_hook=_no_repeated_keys, parse_constant=_no_constant, parse_int=_bounded_int
        )
    except RecursionError as error:
        raise BadRequestError(
            f"{subject} nests too deeply to parse; the limit is {MAX_NESTING} levels of objects and lists"
        ) from error


def check_storable(data: Any, subject: str, error_type: type[SkyShiftError] = InvalidError) -> None:
    """Raise `error_type` when `data` nests deeper than MAX_NESTING or contains a value it cannot store.

    Such values are strings that are not valid Unicode (a lone surrogate such as \\ud800, which JSON
    can escape but UTF-8 cannot encode) and numbers that are not finite (YAML's .inf and .nan, 1e400).
    `subject` names the data in messages, such as "request body".

    Each of these would be accepted and then fail when the object is stored or read back."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            if isinstance(value, str) and not value.isascii():
                _check_text(value, subject, path, error_type)
            elif isinstance(value, float) and not math.isfinite(value):
                raise error_type(
                    f"{subject} has the number {value} at {_field_path(path)}; numbers must be finite: write the "
                    "amount itself"
                )
            continue
        if len(path) >= MAX_NESTING:
            raise error_type(
                f"{subject} nests objects and lists more than {MAX_NESTING} levels deep, at {_field_path(path[:6])}... "
                f"(the limit is {MAX_NESTING}): flatten the value, or store it as a string"
            )
        for key, item in items:
            if isinstance(key, str) and not key.isascii():
                _check_text(key, subject, path, error_type)
            if isinstance(item, (dict, list, float)) or (isinstance(item, str) and not item.isascii()):
                stack.append((item, (*path, key)))


def _field_path(path: tuple[Any, ...]) -> str:
    """Return a path in a body as a dotted field path such as spec.ports.0, or "the top level"."""
    return ".".join(str(part) for part in path) or "the top level"


def _check_text(text: str, subject: str, path: tuple[Any, ...], error_type: type[SkyShiftError]) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as error:
        character = text[error.start]
        raise error_type(
            f"{subject} has a string at {_field_path(path)} that is not valid Unicode: it contains the lone surrogate "
            f"\\u{ord(character):04x}, which UTF-8 cannot encode; send text as UTF-8, and escape a "
            "character outside the Basic Multilingual Plane as a surrogate pair"
        ) from None


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


async def apply_patch(request: Request, document: dict[str, Any], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """Apply the request's patch to `document` according to its Content-Type.

    With `model`, the model of `document`, fields that the patch spells in camelCase or by an
    alias (`restartPolicy`, `env`) are first renamed to the field names that `document` uses."""
    media = _media_type(request) or MERGE_PATCH
    if media == JSON_TYPE:
        media = MERGE_PATCH
    if media not in PATCH_TYPES and media not in YAML_TYPES:
        raise UnsupportedMediaTypeError(
            f"unsupported patch Content-Type {media!r}: use {MERGE_PATCH} or {JSON_TYPE} (both a JSON merge "
            f"patch), {STRATEGIC_MERGE_PATCH} (read as a merge patch), {JSON_PATCH}, or application/yaml "
            f"(a merge patch written in YAML); set the Content-Type header, for example with curl: "
            f"-H 'Content-Type: {MERGE_PATCH}'"
        )
    raw = await request.body()
    check_body_size(raw)
    try:
        if media in YAML_TYPES:
            patch = manifest_yaml.load(raw, "patch body")
        else:
            patch = loads_json(raw or b"null", "patch body")
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as error:
        form = "YAML" if media in YAML_TYPES else "JSON"
        raise BadRequestError(f"patch body is not valid {form}: {error}") from error
    check_storable(patch, "patch body", BadRequestError)
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise BadRequestError(
                f"a JSON patch must be a list of operations, like [{{\"op\": \"replace\", ...}}], got {json_type(patch)}"
            )
        patched = apply_json_patch(document, canonical_json_patch(model, patch) if model else patch)
    elif not isinstance(patch, dict):
        raise BadRequestError(
            f"a merge patch must be an object, like {{\"spec\": {{\"replicas\": 2}}}}, got {json_type(patch)}"
        )
    else:
        patched = merge_patch(document, canonical_merge_patch(model, patch) if model else patch)
    # A patch of modest depth can still deepen the object past the limit.
    check_storable(patched, "the patched object")
    return patched


# Exceptions that jsonpatch raises when an operation is malformed or does not fit the document.
_JSON_PATCH_ERRORS = (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError, IndexError)
_JSON_PATCH_OPS = ("add", "remove", "replace", "move", "copy", "test")
_OPS_WITH_VALUE = ("add", "replace", "test")
_OPS_WITH_FROM = ("move", "copy")


def apply_json_patch(document: dict[str, Any], operations: list[Any]) -> Any:
    """Apply an RFC 6902 JSON patch to a copy of `document`; all operations apply or none does.

    Raises InvalidError naming the first operation that fails (its index, op, path and from) and
    what is wrong with it. The message never contains the document.
    """
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        try:
            result = jsonpatch.apply_patch(result, [operation], in_place=True)
        except _JSON_PATCH_ERRORS as error:
            # A move that fails while adding has already removed its source from `result`, so the
            # failure is explained against the document as the earlier operations left it.
            before = jsonpatch.apply_patch(document, operations[:index])
            problem = _explain_operation_failure(operation, before) or (
                f"jsonpatch raised {type(error).__name__}; check the operation against the object's current JSON"
            )
            raise InvalidError(
                f"{_describe_operation(index, operation)} failed: {problem}; the object was not changed"
            ) from error
    return result


def _describe_operation(index: int, operation: Any) -> str:
    """Name an operation by its index and its op, from and path members, leaving out its value."""
    if not isinstance(operation, dict):
        return f"JSON patch operation {index}"
    members = [
        f"{member} {json.dumps(operation[member], default=str)}"
        for member in ("op", "from", "path")
        if member in operation
    ]
    return f"JSON patch operation {index} ({', '.join(members)})" if members else f"JSON patch operation {index}"


def _explain_operation_failure(operation: Any, document: Any) -> str | None:
    """Say why `operation` cannot apply to `document`, or return None when no reason is found."""
    if not isinstance(operation, dict):
        return (
            f"an operation must be an object like {{\"op\": \"replace\", \"path\": \"/spec/replicas\", "
            f"\"value\": 2}}, not {json_type(operation)}"
        )
    op = operation.get("op")
    if op not in _JSON_PATCH_OPS:
        found = "is missing" if "op" not in operation else f"{json.dumps(op, default=str)} is unknown"
        return f"the op member {found}; use one of {', '.join(_JSON_PATCH_OPS)}"
    required = ["path", *(["from"] if op in _OPS_WITH_FROM else []), *(["value"] if op in _OPS_WITH_VALUE else [])]
    for member in required:
        if member not in operation:
            return f"the {member} member is missing; {op} needs {', '.join(required)}"

    pointers: dict[str, list[str]] = {}
    for member in ("from", "path") if op in _OPS_WITH_FROM else ("path",):
        pointer = operation[member]
        if not isinstance(pointer, str):
            return f"{member} must be a string holding a JSON pointer like /spec/replicas, not {json_type(pointer)}"
        try:
            pointers[member] = jsonpatch.JsonPointer(pointer).parts
        except jsonpatch.JsonPointerException as error:
            return (
                f"{member} {pointer!r} is not a valid JSON pointer ({error}); write it like /spec/replicas, "
                "with ~1 for '/' and ~0 for '~' inside a member name"
            )
    path = operation["path"]

    if op in _OPS_WITH_FROM:
        source = operation["from"]
        problem = _find_location_problem(document, pointers["from"], target_must_exist=True)
        if problem:
            return f"from {source}: {problem}"
        if op == "move":
            source_parts = pointers["from"]
            if pointers["path"][: len(source_parts)] == source_parts and pointers["path"] != source_parts:
                shown_source = source or '""'
                return f"path {path} is inside from {shown_source}, and a value cannot be moved into itself"
            # A move removes its source before it adds, so its path is resolved without the source.
            document = jsonpatch.apply_patch(document, [{"op": "remove", "path": source}])
        problem = _find_location_problem(document, pointers["path"], target_must_exist=False)
    elif op == "remove" and not pointers["path"]:
        return "the path \"\" is the whole object, which cannot be removed"
    else:
        problem = _find_location_problem(document, pointers["path"], target_must_exist=op != "add")
    if problem:
        return f"path {path}: {problem}"
    if op == "test":
        return f"the value at {path} does not equal the tested value"
    return None


def _find_location_problem(document: Any, parts: list[str], *, target_must_exist: bool) -> str | None:
    """Say why the JSON pointer made of `parts` does not resolve in `document`, or return None.

    Every part but the last must exist, and so must the last when `target_must_exist`. Otherwise, as
    for the path of add, move and copy, its parent must only be an object or a list that can take it.
    """
    node = document
    for depth, part in enumerate(parts):
        location = jsonpatch.JsonPointer.from_parts(parts[: depth + 1]).path
        parent = jsonpatch.JsonPointer.from_parts(parts[:depth]).path or "the object's root"
        may_be_new = depth == len(parts) - 1 and not target_must_exist
        if isinstance(node, dict):
            if part in node:
                node = node[part]
                continue
            return None if may_be_new else f"{location} does not exist"
        if isinstance(node, list):
            if part == "-":
                return None if may_be_new else f"'-' (the end of {parent}) can only be the path of add, move or copy"
            if not (part.isascii() and part.isdecimal()):
                ending = ", or - to append" if may_be_new else ""
                return f"{parent} is a list, so '{part}' must be an index such as 0{ending}"
            index = int(part)
            limit = len(node) if may_be_new else len(node) - 1
            if index > limit:
                accepted = f"; add accepts 0 to {len(node)}, or - to append" if may_be_new else ""
                return f"index {index} is out of range for a list of {len(node)} items{accepted}"
            if index == len(node):
                return None
            node = node[index]
            continue
        return f"{parent} is {json_type(node)}, not an object or a list, so it has no member '{part}'"
    return None


def json_type(value: Any) -> str:
    """Name the JSON type of a decoded value, with its article: 'a string', 'an object'."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"
