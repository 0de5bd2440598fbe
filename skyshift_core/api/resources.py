"""CRUD, list and watch routes for every kind, generated from the kind table.

Paths follow Kubernetes: `/api/v1/namespaces/{namespace}/{plural}[/{name}[/status]]` for
namespaced kinds (and `/api/v1/{plural}` across all namespaces), `/api/v1/{plural}[/{name}[/status]]`
for cluster-scoped ones.
"""

from __future__ import annotations

import json
import dataclasses
from typing import Any

from fastapi import APIRouter, Request, Response

from skyshift_core.api.admission import admit
from skyshift_core.api.bodies import PATCH_TYPES, apply_patch, read_manifest
from skyshift_core.api.fast_routes import direct_route
from skyshift_core.api.leases import fence_from_request
from skyshift_core.api.watch import watch_response
from skyshift_core.auth.service import authorize, check_role_write, object_written
from skyshift_core.errors import BadRequestError, ConflictError, InvalidError
from skyshift_core.objects import Role, parse_object, parse_selector
from skyshift_core.objects.meta import DEFAULT_NAMESPACE, Object
from skyshift_core.store import Store

# Retries of a patch without a client precondition when another writer gets in between.
_PATCH_ATTEMPTS = 5

_MANIFEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}
_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {media: {"schema": {}} for media in PATCH_TYPES},
    }
}


def query(request: Request, *names: str) -> str | None:
    """First of several spellings of a query parameter (`resource_version`, `resourceVersion`)."""
    for name in names:
        value = request.query_params.get(name)
        if value is not None:
            return value
    return None


def precondition(request: Request, in_body: str | None) -> str | None:
    """Return the resource_version that a PUT or PATCH must match: from the query or from the body.

    Raises BadRequestError when both are given and differ."""
    in_query = query(request, "resource_version", "resourceVersion")
    if in_query is None:
        return in_body
    if in_body not in (None, "", in_query):
        raise BadRequestError(
            f"resource_version {in_query!r} in the query differs from metadata.resource_version {in_body!r} "
            "in the body; send the precondition in one place"
        )
    return in_query


def query_bool(request: Request, *names: str) -> bool:
    value = query(request, *names)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no", ""):
        return False
    raise BadRequestError(f"invalid value {value!r} for query parameter {names[0]!r}: expected true or false")


def query_int(request: Request, *names: str) -> int | None:
    value = query(request, *names)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as error:
        raise BadRequestError(f"invalid value {value!r} for query parameter {names[0]!r}: expected an integer") from error


def json_response(data: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status_code, media_type="application/json")


def dump(obj: Object) -> dict:
    return obj.model_dump(mode="json")


def object_response(obj: Object, status_code: int = 200) -> Response:
    return Response(obj.model_dump_json(), status_code=status_code, media_type="application/json")


def build_router(model: type[Object], get_store, get_metrics, bookmark_interval: float) -> APIRouter:
    """Routes for one kind; `get_store(request)` returns the app's Store."""
    router = APIRouter(tags=[model.plural])
    kind = model.model_fields["kind"].default
    if model.namespaced:
        collection = "/api/v1/namespaces/{namespace}/" + model.plural
        item = collection + "/{name}"
    else:
        collection = "/api/v1/" + model.plural
        item = collection + "/{name}"

    def namespace_of(request: Request) -> str | None:
        return request.path_params.get("namespace") if model.namespaced else None

    # Authorization of every route below, in one place: the verb on `<plural>` or `<plural>/<subresource>`
    # in the path's namespace. It runs first, so a caller without the right learns nothing from validation.
    async def check(request: Request, verb: str, subresource: str | None = None) -> None:
        resource = f"{model.plural}/{subresource}" if subresource else model.plural
        await authorize(request, verb, resource, namespace_of(request), request.path_params.get("name"))

    async def list_or_watch(request: Request, namespace: str | None) -> Response:
        watching = (query(request, "watch") or "").lower() in ("1", "true", "yes")
        await check(request, "watch" if watching else "list")
        store: Store = get_store(request)
        try:
            selector = parse_selector(query(request, "label_selector", "labelSelector"))
        except ValueError as error:
            raise BadRequestError(str(error)) from error
        resource_version = query(request, "resource_version", "resourceVersion")
        if query_bool(request, "watch"):
            timeout = query_int(request, "timeout_seconds", "timeoutSeconds")
            return await watch_response(
                store, model, namespace, resource_version, selector, timeout, bookmark_interval, get_metrics(request)
            )
        limit = query_int(request, "limit")
        result = await store.list(
            model, namespace, selector=selector, limit=limit, continue_token=query(request, "continue")
        )
        metadata: dict[str, Any] = {"resource_version": result.resource_version}
        if result.continue_token:
            metadata["continue"] = result.continue_token
        # Items are serialized by pydantic and spliced in, which is several times faster than
        # building one large dict and encoding it with the json module.
        head = json.dumps({"kind": f"{kind}List", "api_version": "v1", "metadata": metadata}, separators=(",", ":"))
        items = b",".join(item.model_dump_json().encode() for item in result.items)
        body = head[:-1].encode() + b',"items":[' + items + b"]}"
        return Response(body, media_type="application/json")

    async def create(request: Request) -> Response:
        await check(request, "create")
        namespace = namespace_of(request)
        data = await read_manifest(request)
        obj = parse_object(data, model)
        # The audit log names the object, which for a create is known only from the body.
        request.state.auth_attributes = dataclasses.replace(request.state.auth_attributes, name=obj.metadata.name)
        admit(obj)
        if model is Role:
            obj = await check_role_write(request, obj, None)
        if model.namespaced:
            if obj.metadata.namespace not in (None, namespace):
                raise BadRequestError(
                    f"metadata.namespace {obj.metadata.namespace!r} does not match the namespace in the path, {namespace!r}"
                )
            obj.metadata.namespace = namespace
        created = await get_store(request).create(obj, fence=fence_from_request(request))
        object_written(request, model, created.metadata.name)
        return object_response(created, 201)

    async def read(request: Request, name: str, subresource: str | None = None) -> Response:
        await check(request, "get", subresource)
        return object_response(await get_store(request).get(model, namespace_of(request), name))

    async def replace(request: Request, name: str, subresource: str | None = None) -> Response:
        await check(request, "update", subresource)
        namespace = namespace_of(request)
        obj = parse_object(await read_manifest(request), model)
        if subresource is None:
            admit(obj)
        if obj.metadata.name != name:
            raise BadRequestError(f"metadata.name {obj.metadata.name!r} does not match the name in the path, {name!r}")
        if model.namespaced:
            if obj.metadata.namespace not in (None, namespace):
                raise BadRequestError(
                    f"metadata.namespace {obj.metadata.namespace!r} does not match the namespace in the path, {namespace!r}"
                )
            obj.metadata.namespace = namespace
        obj.metadata.resource_version = precondition(request, obj.metadata.resource_version)
        if model is Role and subresource is None:
            obj = await check_role_write(request, obj, await get_store(request).get(Role, None, name))
        updated = await get_store(request).update(obj, subresource=subresource, fence=fence_from_request(request))
        object_written(request, model, name)
        return object_response(updated)

    async def patch(request: Request, name: str, subresource: str | None = None) -> Response:
        await check(request, "patch", subresource)
        store: Store = get_store(request)
        namespace = namespace_of(request)
        for attempt in range(_PATCH_ATTEMPTS):
            current = await store.get(model, namespace, name)
            document = dump(current)
            patched = await apply_patch(request, document, model)
            if not isinstance(patched, dict):
                raise InvalidError("the patched object is not an object")
            metadata = patched.get("metadata") if isinstance(patched.get("metadata"), dict) else {}
            if metadata.get("name") != name or (model.namespaced and metadata.get("namespace") != namespace):
                raise InvalidError("a patch must not change metadata.name or metadata.namespace")
            # A resource_version in the patch is the client's precondition; otherwise the patch
            # applies to the version it was computed from and is recomputed if that one changed.
            raw = await request.body()
            explicit = (
                metadata.get("resource_version") != current.metadata.resource_version
                or b"resource_version" in raw
                or b"resourceVersion" in raw
            )
            required = precondition(request, metadata.get("resource_version") if explicit else None)
            if required is not None:
                patched["metadata"] = {**metadata, "resource_version": required}
                explicit = True
            elif not explicit:
                patched["metadata"] = {**metadata, "resource_version": current.metadata.resource_version}
            obj = parse_object(patched, model)
            if subresource is None:
                admit(obj)
            if model is Role and subresource is None:
                obj = await check_role_write(request, obj, current)
            try:
                updated = await store.update(obj, subresource=subresource, fence=fence_from_request(request))
            except ConflictError:
                if explicit or attempt == _PATCH_ATTEMPTS - 1:
                    raise
                continue
            object_written(request, model, name)
            return object_response(updated)
        raise AssertionError("unreachable")

    async def delete(request: Request, name: str) -> Response:
        await check(request, "delete")
        resource_version = query(request, "resource_version", "resourceVersion")
        raw = await request.body()
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as error:
                raise BadRequestError(f"delete options are not valid JSON: {error}") from error
            preconditions = options.get("preconditions") if isinstance(options, dict) else None
            if isinstance(preconditions, dict):
                resource_version = (
                    preconditions.get("resource_version") or preconditions.get("resourceVersion") or resource_version
                )
        deleted = await get_store(request).delete(
            model, namespace_of(request), name, resource_version, fence=fence_from_request(request)
        )
        object_written(request, model, name)
        return object_response(deleted)

    # Every endpoint takes the request and its path parameters only, so `SkyShiftApi` may call it
    # directly (see `skyshift_core.api.fast_routes`).
    summary = kind
    if model.namespaced:

        @direct_route
        async def list_all(request: Request) -> Response:
            return await list_or_watch(request, None)

        @direct_route
        async def list_namespaced(request: Request, namespace: str) -> Response:
            return await list_or_watch(request, namespace)

        @direct_route
        async def create_namespaced(request: Request, namespace: str) -> Response:
            return await create(request)

        @direct_route
        async def read_namespaced(request: Request, namespace: str, name: str) -> Response:
            return await read(request, name)

        @direct_route
        async def read_namespaced_status(request: Request, namespace: str, name: str) -> Response:
            return await read(request, name, "status")

        @direct_route
        async def replace_namespaced(request: Request, namespace: str, name: str) -> Response:
            return await replace(request, name)

        @direct_route
        async def replace_namespaced_status(request: Request, namespace: str, name: str) -> Response:
            return await replace(request, name, "status")

        @direct_route
        async def patch_namespaced(request: Request, namespace: str, name: str) -> Response:
            return await patch(request, name)

        @direct_route
        async def patch_namespaced_status(request: Request, namespace: str, name: str) -> Response:
            return await patch(request, name, "status")

        @direct_route
        async def delete_namespaced(request: Request, namespace: str, name: str) -> Response:
            return await delete(request, name)

        router.add_api_route("/api/v1/" + model.plural, list_all, methods=["GET"], summary=f"List or watch {summary} in all namespaces")
        router.add_api_route(collection, list_namespaced, methods=["GET"], summary=f"List or watch {summary}")
        router.add_api_route(collection, create_namespaced, methods=["POST"], summary=f"Create a {summary}", openapi_extra=_MANIFEST_BODY, status_code=201)
        router.add_api_route(item, read_namespaced, methods=["GET"], summary=f"Read a {summary}")
        router.add_api_route(item, replace_namespaced, methods=["PUT"], summary=f"Replace a {summary}", openapi_extra=_MANIFEST_BODY)
        router.add_api_route(item, patch_namespaced, methods=["PATCH"], summary=f"Patch a {summary}", openapi_extra=_PATCH_BODY)
        router.add_api_route(item, delete_namespaced, methods=["DELETE"], summary=f"Delete a {summary}")
        router.add_api_route(item + "/status", read_namespaced_status, methods=["GET"], summary=f"Read a {summary}'s status")
        router.add_api_route(item + "/status", replace_namespaced_status, methods=["PUT"], summary=f"Replace a {summary}'s status", openapi_extra=_MANIFEST_BODY)
        router.add_api_route(item + "/status", patch_namespaced_status, methods=["PATCH"], summary=f"Patch a {summary}'s status", openapi_extra=_PATCH_BODY)
    else:

        @direct_route
        async def list_cluster(request: Request) -> Response:
            return await list_or_watch(request, None)

        @direct_route
        async def create_cluster(request: Request) -> Response:
            return await create(request)

        @direct_route
        async def read_cluster(request: Request, name: str) -> Response:
            return await read(request, name)

        @direct_route
        async def replace_cluster(request: Request, name: str) -> Response:
            return await replace(request, name)

        @direct_route
        async def patch_cluster(request: Request, name: str) -> Response:
            return await patch(request, name)

        @direct_route
        async def delete_cluster(request: Request, name: str) -> Response:
            return await delete(request, name)

        @direct_route
        async def read_status(request: Request, name: str) -> Response:
            return await read(request, name, "status")

        @direct_route
        async def replace_status(request: Request, name: str) -> Response:
            return await replace(request, name, "status")

        @direct_route
        async def patch_status(request: Request, name: str) -> Response:
            return await patch(request, name, "status")

        router.add_api_route(collection, list_cluster, methods=["GET"], summary=f"List or watch {summary}")
        router.add_api_route(collection, create_cluster, methods=["POST"], summary=f"Create a {summary}", openapi_extra=_MANIFEST_BODY, status_code=201)
        router.add_api_route(item, read_cluster, methods=["GET"], summary=f"Read a {summary}")
        router.add_api_route(item, replace_cluster, methods=["PUT"], summary=f"Replace a {summary}", openapi_extra=_MANIFEST_BODY)
        router.add_api_route(item, patch_cluster, methods=["PATCH"], summary=f"Patch a {summary}", openapi_extra=_PATCH_BODY)
        router.add_api_route(item, delete_cluster, methods=["DELETE"], summary=f"Delete a {summary}")
        router.add_api_route(item + "/status", read_status, methods=["GET"], summary=f"Read a {summary}'s status")
        router.add_api_route(item + "/status", replace_status, methods=["PUT"], summary=f"Replace a {summary}'s status", openapi_extra=_MANIFEST_BODY)
        router.add_api_route(item + "/status", patch_status, methods=["PATCH"], summary=f"Patch a {summary}'s status", openapi_extra=_PATCH_BODY)
    return router
