"""Request bodies: JSON or YAML manifests, and the three PATCH formats."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import yaml
from fastapi import Request

from skyshift_core.errors import BadRequestError, InvalidError

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# Kubernetes clients send strategic merge patches by default; for SkyShift's objects, which
# have no list merge keys, it behaves as a JSON merge patch.
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH)

MAX_BODY_BYTES = 3 * 1024 * 1024  # etcd's default request limit is 1.5 MiB; leave room for encoding.


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_manifest(request: Request) -> dict[str, Any]:
    """Parse a JSON or YAML body into a mapping; YAML when the content type says so."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequestError(f"request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw.strip():
        raise BadRequestError("request body is empty: send the object as JSON or YAML")
    media = _media_type(request)
    try:
        if media in YAML_TYPES:
            data = yaml.safe_load(raw)
        else:
            data = json.loads(raw)
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as error:
        form = "YAML" if media in YAML_TYPES else "JSON"
        raise BadRequestError(
            f"request body is not valid {form}: {error}; set Content-Type: application/yaml for YAML"
        ) from error
    if not isinstance(data, dict):
        raise BadRequestError(f"request body must be an object, got {type(data).__name__}")
    return data


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


async def apply_patch(request: Request, document: dict[str, Any]) -> dict[str, Any]:
    """Apply the request's patch to `document` according to its Content-Type."""
    media = _media_type(request) or MERGE_PATCH
    if media == "application/json":
        media = MERGE_PATCH
    if media not in PATCH_TYPES and media not in YAML_TYPES:
        raise BadRequestError(f"unsupported patch Content-Type {media!r}: use one of {', '.join(PATCH_TYPES)}")
    raw = await request.body()
    try:
        patch = yaml.safe_load(raw) if media in YAML_TYPES else json.loads(raw or b"null")
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as error:
        raise BadRequestError(f"patch body is not valid JSON: {error}") from error
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise BadRequestError("a JSON patch must be a list of operations, like [{\"op\": \"replace\", ...}]")
        try:
            return jsonpatch.apply_patch(document, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as error:
            raise InvalidError(f"JSON patch could not be applied: {error}") from error
    if not isinstance(patch, dict):
        raise BadRequestError("a merge patch must be an object")
    return merge_patch(document, patch)
