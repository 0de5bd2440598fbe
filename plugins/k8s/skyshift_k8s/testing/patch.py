"""The three PATCH formats of kube-apiserver: JSON patch, JSON merge patch, strategic merge patch.

Strategic merge patch follows the Kubernetes rules for the lists that the fake's kinds use most.
Lists of objects with a merge key (containers by name, conditions by type, ...) are merged item
by item, and `finalizers` is merged as a set. The `$patch: delete` and `$patch: replace`
directives work. Every other list is replaced, as in a merge patch.
"""

from __future__ import annotations

import copy
from typing import Any

from . import errors

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
SUPPORTED_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH]

# Field name -> merge key, from the `patchMergeKey` tags of the Kubernetes API types.
# `ports` is resolved per list: containerPort for container ports, port for service ports.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "taints": "key",
    "addresses": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_SET_LISTS = {"finalizers"}


def json_patch(document: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch and return the patched copy."""
    if not isinstance(operations, list):
        raise errors.bad_request('json patch must be a JSON array of operations, for example [{"op": "add", ...}]')
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise errors.bad_request(
                f"json patch operation {index} must be an object with 'op' and 'path': {operation!r}"
            )
        result = _apply_json_patch_operation(result, operation)
    return result


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise errors.bad_request(f"invalid JSON pointer {pointer!r}: it must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _resolve_parent(document: Any, parts: list[str], pointer: str) -> tuple[Any, str]:
    target = document
    for part in parts[:-1]:
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise errors.ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: "
                f"json patch path {pointer!r} does not exist",
            )
    return target, parts[-1]


def _get_pointer(document: Any, pointer: str) -> Any:
    target = document
    for part in _split_pointer(pointer):
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            raise errors.ApiError(422, "Invalid", f"json patch path {pointer!r} does not exist")
    return target


def _list_index(container: list, key: str, pointer: str, allow_end: bool) -> int:
    if key == "-" and allow_end:
        return len(container)
    if not key.isdigit() or int(key) > len(container) - (0 if allow_end else 1):
        raise errors.ApiError(422, "Invalid", f"json patch index {key!r} is out of range in path {pointer!r}")
    return int(key)


def _add(document: Any, pointer: str, value: Any) -> Any:
    parts = _split_pointer(pointer)
    if not parts:
        return value
    parent, key = _resolve_parent(document, parts, pointer)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, key, pointer, allow_end=True), value)
    else:
        raise errors.ApiError(422, "Invalid", f"json patch path {pointer!r} does not point into an object or array")
    return document


def _remove(document: Any, pointer: str) -> tuple[Any, Any]:
    parts = _split_pointer(pointer)
    parent, key = _resolve_parent(document, parts, pointer)
    if isinstance(parent, dict) and key in parent:
        return document, parent.pop(key)
    if isinstance(parent, list):
        return document, parent.pop(_list_index(parent, key, pointer, allow_end=False))
    raise errors.ApiError(422, "Invalid", f"json patch cannot remove {pointer!r}: the path does not exist")


def _apply_json_patch_operation(document: Any, operation: dict[str, Any]) -> Any:
    op, pointer = operation["op"], operation["path"]
    if op == "add":
        return _add(document, pointer, copy.deepcopy(operation.get("value")))
    if op == "remove":
        return _remove(document, pointer)[0]
    if op == "replace":
        _get_pointer(document, pointer)
        document, _ = _remove(document, pointer) if _split_pointer(pointer) else (document, None)
        return _add(document, pointer, copy.deepcopy(operation.get("value")))
    if op in ("move", "copy"):
        source = operation.get("from")
        if source is None:
            raise errors.bad_request(f"json patch {op} operation needs a 'from' path: {operation!r}")
        value = copy.deepcopy(_get_pointer(document, source))
        if op == "move":
            document, _ = _remove(document, source)
        return _add(document, pointer, value)
    if op == "test":
        actual = _get_pointer(document, pointer)
        if actual != operation.get("value"):
            raise errors.ApiError(
                422,
                "Invalid",
                f"json patch test operation failed at {pointer!r}: expected {operation.get('value')!r}, found {actual!r}",
            )
        return document
    raise errors.bad_request(f"unknown json patch operation {op!r}: expected add, remove, replace, move, copy or test")


def merge_patch(document: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch and return the patched copy."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(document: Any, patch: Any) -> Any:
    """Apply a strategic merge patch (see the module docstring for the supported rules)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in value]
            continue
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_key(field: str, items: list) -> str | None:
    if field == "ports":
        return "containerPort" if any("containerPort" in item for item in items if isinstance(item, dict)) else "port"
    return _MERGE_KEYS.get(field)


def _merge_list(field: str, current: list, patch: list) -> list:
    if field in _SET_LISTS:
        return current + [item for item in patch if item not in current]
    merge_key = _merge_key(field, current + patch)
    if merge_key is None or not all(isinstance(item, dict) for item in current + patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if item.get("$patch") != "replace"]
    result = copy.deepcopy(current)
    for item in patch:
        position = next(
            (i for i, existing in enumerate(result) if existing.get(merge_key) == item.get(merge_key)), None
        )
        if item.get("$patch") == "delete":
            if position is not None:
                result.pop(position)
        elif position is None:
            result.append(copy.deepcopy(item))
        else:
            result[position] = strategic_merge_patch(result[position], item)
    return result


def apply_patch(document: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply `patch` in the format named by the request's Content-Type."""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == JSON_PATCH:
        return json_patch(document, patch)
    if media_type == MERGE_PATCH:
        return merge_patch(document, patch)
    if media_type == STRATEGIC_MERGE_PATCH:
        if not isinstance(patch, dict):
            raise errors.bad_request("strategic merge patch must be a JSON object")
        return strategic_merge_patch(document, patch)
    # NOTE: server-side apply (application/apply-patch+yaml) is not implemented: it rejects with 415.
    raise errors.unsupported_media_type(content_type, SUPPORTED_PATCH_TYPES)
