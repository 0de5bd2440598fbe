"""CRUD, list and watch routes for every kind, generated from the kind table.

Paths follow Kubernetes: `/api/v1/namespaces/{namespace}/{plural}[/{name}[/status]]` for
namespaced kinds (and `/api/v1/{plural}` across all namespaces), `/api/v1/{plural}[/{name}[/status]]`
for cluster-scoped ones.
"""

from __future__ import annotations

import json
import dataclasses
import enum
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from skyshift_core.api.admission import admit
from skyshift_core.api.bodies import (
    PATCH_TYPES,
    apply_patch,
    check_body_size,
    check_storable,
    json_type,
    loads_json,
    read_manifest,
)
from skyshift_core.api.fast_routes import direct_route
from skyshift_core.api.leases import fence_from_request
from skyshift_core.api.watch import MAX_TIMEOUT_SECONDS, watch_response
from skyshift_core.auth.service import authorize, check_role_write, object_written, watch_recheck
from skyshift_core.errors import BadRequestError, ConflictError, InvalidError
from skyshift_core.objects import Role, parse_object, parse_selector
from skyshift_core.objects.base import suggest
from skyshift_core.objects.meta import DEFAULT_NAMESPACE, Object
from skyshift_core.objects.selectors import FieldRequirement, parse_field_selector
from skyshift_core.store import Store
from skyshift_core.store.etcd import MAX_REVISION, uid_conflict_message

# Integer query parameters are int64 unless a route narrows them: etcd's revisions and limits are int64.
_INT64_MIN = -(2**63)

# Retries of a patch without a client precondition when another writer gets in between. Each
# conflict means that another write succeeded, so the patch is recomputed until it applies, as in
# Kubernetes' GuaranteedUpdate. The bound only stops a loop that other writers keep winning.
_PATCH_ATTEMPTS = 100

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


def query_named(request: Request, *names: str) -> tuple[str, str] | None:
    """Return the spelling used and the value of the first of several spellings of a query parameter."""
    for name in names:
        value = request.query_params.get(name)
        if value is not None:
            return name, value
    return None


def query(request: Request, *names: str) -> str | None:
    """First of several spellings of a query parameter (`resource_version`, `resourceVersion`)."""
    found = query_named(request, *names)
    return None if found is None else found[1]


def query_resource_version(request: Request) -> int | None:
    """Return the request's resource_version query parameter as a revision, or None without one.

    Raises BadRequestError naming the parameter as spelled when it is not an integer from 0 to MAX_REVISION."""
    found = query_named(request, "resource_version", "resourceVersion")
    if found is None:
        return None
    name, value = found
    return Store.parse_resource_version(value, f"query parameter {name}")


def precondition(request: Request, in_body: str | None) -> str | None:
    """Return the resource_version that a PUT or PATCH must match: from the query or from the body.

    Raises BadRequestError when either is not a valid resource_version, or when both are given and differ."""
    Store.parse_resource_version(in_body, "metadata.resource_version")
    found = query_named(request, "resource_version", "resourceVersion")
    if found is None:
        return in_body
    name, in_query = found
    Store.parse_resource_version(in_query, f"query parameter {name}")
    if in_body not in (None, "", in_query):
        raise BadRequestError(
            f"resource_version {in_query!r} in the query differs from metadata.resource_version {in_body!r} "
            "in the body; send the precondition in one place"
        )
    return in_query


_RESOURCE_VERSION_MATCHES = ("NotOlderThan", "Exact")


def resource_version_match(
    request: Request, resource_version: int | None, watching: bool, initial_events: bool | None = None
) -> bool:
    """Return True when the request lists exactly at its resource_version
    (`resourceVersionMatch=Exact`), False for the default, not older than it.

    Raises BadRequestError, as Kubernetes does, for another value, for a match without a
    resource_version (or with 0 for Exact), and for a watch unless it is the NotOlderThan that goes
    with sendInitialEvents=true."""
    found = query_named(request, "resourceVersionMatch", "resource_version_match")
    if found is None:
        return False
    name, value = found
    if value not in _RESOURCE_VERSION_MATCHES:
        hint = suggest(value, list(_RESOURCE_VERSION_MATCHES))
        raise BadRequestError(
            f"invalid query parameter {name}={value!r}{hint}: expected {' or '.join(_RESOURCE_VERSION_MATCHES)}"
        )
    if watching:
        if initial_events and value == "NotOlderThan":
            return False
        raise BadRequestError(
            f"query parameter {name}={value} on a watch needs sendInitialEvents=true and takes only NotOlderThan; "
            "leave it out of other watches"
        )
    if resource_version is None or (value == "Exact" and resource_version == 0):
        needed = "a nonzero resourceVersion" if value == "Exact" else "a resourceVersion"
        raise BadRequestError(f"query parameter {name}={value} needs {needed} to compare with; add one or leave it out")
    return value == "Exact"


def query_bool(request: Request, *names: str) -> bool:
    value = query(request, *names)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no", ""):
        return False
    raise BadRequestError(f"invalid value {value!r} for query parameter {names[0]!r}: expected true or false")


def query_int(request: Request, *names: str, minimum: int = _INT64_MIN, maximum: int = MAX_REVISION) -> int | None:
    """Return an integer query parameter, or None when it is absent or empty.

    Raises BadRequestError naming the parameter as spelled when the value is not an integer from
    `minimum` to `maximum`. The default range is int64, the widest that etcd takes.
    """
    found = query_named(request, *names)
    if found is None or found[1] == "":
        return None
    name, value = found
    expected = f"expected an integer from {minimum} to {maximum}"
    try:
        number = int(value)
    except ValueError as error:
        raise BadRequestError(f"invalid value {value!r} for query parameter {name!r}: {expected}") from error
    if not minimum <= number <= maximum:
        raise BadRequestError(f"invalid value {value!r} for query parameter {name!r}: {expected}")
    return number


# Verbs that change stored objects, and so must not run when the client asked for a dry run.
_WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


def dry_run_of(request: Request, verb: str) -> bool:
    """Return True when a write requests a dry run (`dryRun=All`, which kubectl --dry-run=server sends).

    A dry run of a create, update or patch runs every check and returns the object as it would be
    stored, without storing it. Raises BadRequestError for another value, and for a delete, which
    has no dry run here: ignoring the parameter would apply the change for real.
    """
    found = query_named(request, "dryRun", "dry_run")
    if found is None:
        return False
    name, value = found
    if verb == "delete":
        raise BadRequestError(
            f"query parameter {name}={value!r} is not supported for delete: this API server has a dry run for "
            "create, update and patch only, and would delete the object; leave it out"
        )
    if value != "All":
        raise BadRequestError(f"invalid query parameter {name}={value!r}: the only dry run is {name}=All")
    return True


def check_kind(data: dict[str, Any], kind: str) -> None:
    """Raise BadRequestError when a body names a kind other than the one of the request path."""
    body_kind = data.get("kind")
    if body_kind is None or body_kind == kind:
        return
    if not isinstance(body_kind, str):
        raise BadRequestError(f"kind must be the string {kind!r} for this request path, got {json_type(body_kind)}")
    raise BadRequestError(
        f"kind {body_kind!r} does not match the request path, which is for {kind}; "
        f"send the object to the path of its kind, or set kind to {kind!r}"
    )


def _status_phase(model: type[Object]) -> FieldInfo | None:
    """Return the field `phase` of `model`'s status, or None when its status has no phase."""
    status = model.model_fields.get("status")
    status_type = status.annotation if status is not None else None
    if not (isinstance(status_type, type) and issubclass(status_type, BaseModel)):
        return None
    return status_type.model_fields.get("phase")


def selectable_fields(model: type[Object]) -> tuple[str, ...]:
    """Return the fields that a field selector on `model` may name.

    As in Kubernetes, every kind offers metadata.name and metadata.namespace. A kind whose status
    has a phase (Job, Cluster, Link, Namespace) offers status.phase too.
    """
    fields = ("metadata.name", "metadata.namespace")
    if _status_phase(model) is not None:
        fields += ("status.phase",)
    return fields


def phase_values(model: type[Object]) -> tuple[str, ...]:
    """Return the values that `status.phase` may take on `model`, or () when they are not an enumeration."""
    phase = _status_phase(model)
    phase_type = phase.annotation if phase is not None else None
    if isinstance(phase_type, type) and issubclass(phase_type, enum.Enum):
        return tuple(str(member.value) for member in phase_type)
    return ()


def json_response(data: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status_code, media_type="application/json")


def dump(obj: Object) -> dict:
    return obj.model_dump(mode="json")


def object_response(obj: Object, status_code: int = 200, warnings: list[str] | None = None) -> Response:
    response = Response(obj.model_dump_json(), status_code=status_code, media_type="application/json")
    for warning in warnings or ():
        response.headers.append("Warning", warning_header(warning))
    return response


def warning_header(text: str) -> str:
    """Return an HTTP Warning header value with code 299, the form Kubernetes' API server sends."""
    # Header values are ASCII, and the text is a quoted string, so quotes and backslashes are escaped.
    quoted = text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{quoted}"'


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

    fields = selectable_fields(model)

    def namespace_of(request: Request) -> str | None:
        return request.path_params.get("namespace") if model.namespaced else None

    phases = phase_values(model)

    def field_selector_of(request: Request) -> tuple[FieldRequirement, ...]:
        try:
            requirements = parse_field_selector(query(request, "field_selector", "fieldSelector"), fields)
        except ValueError as error:
            raise BadRequestError(f"{error} (on {model.plural})") from error
        for requirement in requirements:
            # A misspelt phase would match nothing, silently, so the kind's phases are checked.
            if requirement.field == "status.phase" and phases and requirement.value not in phases:
                raise BadRequestError(
                    f"unknown status.phase {requirement.value!r} for {model.plural}"
                    f"{suggest(requirement.value, list(phases))}; valid: {', '.join(phases)}"
                )
        return requirements

    # Authorization of every route below, in one place: the verb on `<plural>` or `<plural>/<subresource>`
    # in the path's namespace. It runs first, so a caller without the right learns nothing from validation.
    async def check(request: Request, verb: str, subresource: str | None = None) -> None:
        resource = f"{model.plural}/{subresource}" if subresource else model.plural
        await authorize(request, verb, resource, namespace_of(request), request.path_params.get("name"))
        if verb in _WRITE_VERBS:
            request.state.dry_run = dry_run_of(request, verb)

    async def list_or_watch(request: Request, namespace: str | None) -> Response:
        watching = (query(request, "watch") or "").lower() in ("1", "true", "yes")
        await check(request, "watch" if watching else "list")
        store: Store = get_store(request)
        try:
            selector = parse_selector(query(request, "label_selector", "labelSelector"))
        except ValueError as error:
            raise BadRequestError(str(error)) from error
        field_selector = field_selector_of(request)
        resource_version = query_resource_version(request)
        initial_events = None
        if query_named(request, "sendInitialEvents", "send_initial_events") is not None:
            initial_events = query_bool(request, "sendInitialEvents", "send_initial_events")
            if not watching:
                raise BadRequestError("query parameter sendInitialEvents applies to watches; add watch=true")
        exact = resource_version_match(request, resource_version, watching, initial_events)
        if query_bool(request, "watch"):
            timeout = query_int(request, "timeout_seconds", "timeoutSeconds", minimum=1, maximum=MAX_TIMEOUT_SECONDS)
            return await watch_response(
                store,
                model,
                namespace,
                resource_version,
                selector,
                field_selector,
                timeout,
                bookmark_interval,
                get_metrics(request),
                getattr(request.app.state, "watch_drain", None),
                watch_recheck(request),
                initial_events,
            )
        limit = query_int(request, "limit", minimum=0)
        continue_token = query(request, "continue")
        if resource_version:
            if continue_token:
                # As in Kubernetes: the token already fixes the revision that every page is read at.
                raise BadRequestError(
                    f"resource_version {resource_version} cannot be combined with continue, whose token fixes the "
                    "version of the whole list; leave resource_version out when you pass continue"
                )
            # A nonzero version means "not older than": the latest state qualifies once etcd has reached it.
            await store.wait_for_revision(resource_version)
        result = await store.list(
            model, namespace, selector=selector, field_selector=field_selector, limit=limit,
            continue_token=continue_token, revision=resource_version if exact else None,
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
        check_kind(data, kind)
        obj = parse_object(data, model)
        # The audit log names the object, which for a create is known only from the body.
        request.state.auth_attributes = dataclasses.replace(request.state.auth_attributes, name=obj.metadata.name)
        warnings = admit(obj)
        if model is Role:
            obj = await check_role_write(request, obj, None)
        if model.namespaced:
            if obj.metadata.namespace not in (None, namespace):
                raise BadRequestError(
                    f"metadata.namespace {obj.metadata.namespace!r} does not match the namespace in the path, {namespace!r}"
                )
            obj.metadata.namespace = namespace
        if request.state.dry_run:
            return object_response(await get_store(request).preview_create(obj), 201, warnings)
        created = await get_store(request).create(obj, fence=fence_from_request(request))
        object_written(request, model, created.metadata.name)
        return object_response(created, 201, warnings)

    async def read(request: Request, name: str, subresource: str | None = None) -> Response:
        await check(request, "get", subresource)
        store: Store = get_store(request)
        resource_version = query_resource_version(request)
        if resource_version:
            # Not older than the version given, as for a list.
            await store.wait_for_revision(resource_version)
        return object_response(await store.get(model, namespace_of(request), name))

    async def replace(request: Request, name: str, subresource: str | None = None) -> Response:
        await check(request, "update", subresource)
        namespace = namespace_of(request)
        data = await read_manifest(request)
        check_kind(data, kind)
        obj = parse_object(data, model)
        warnings = admit(obj) if subresource is None else []
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
        dry_run = request.state.dry_run
        updated = await get_store(request).update(
            obj, subresource=subresource, fence=fence_from_request(request), dry_run=dry_run
        )
        if not dry_run:
            object_written(request, model, name)
        return object_response(updated, warnings=warnings)

    async def patch(request: Request, name: str, subresource: str | None = None) -> Response:
        await check(request, "patch", subresource)
        store: Store = get_store(request)
        namespace = namespace_of(request)
        for attempt in range(_PATCH_ATTEMPTS):
            current = await store.get(model, namespace, name)
            document = dump(current)
            patched = await apply_patch(request, document, model)
            if not isinstance(patched, dict):
                raise InvalidError(f"the patch turns the object into {json_type(patched)}; a patch must leave an object")
            check_kind(patched, kind)
            metadata = patched.get("metadata") if isinstance(patched.get("metadata"), dict) else {}
            if metadata.get("name") != name or (model.namespaced and metadata.get("namespace") != namespace):
                raise InvalidError("a patch must not change metadata.name or metadata.namespace")
            if metadata.get("uid") not in (None, current.metadata.uid):
                raise ConflictError(
                    uid_conflict_message(Store._describe(model, namespace, name), metadata["uid"], current.metadata.uid)
                )
            if "finalizers" not in metadata:
                # The patch removed them (`"finalizers": null`); an update that omits them keeps them.
                metadata = patched["metadata"] = {**metadata, "finalizers": []}
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
            warnings = admit(obj) if subresource is None else []
            if subresource is None and patched.get("status") != document.get("status"):
                # The main resource ignores status, as in Kubernetes: controllers write it through /status.
                warnings.append(
                    "the patch changes status, which only the controllers write (through the status "
                    "subresource); the server ignores that part"
                )
            if model is Role and subresource is None:
                obj = await check_role_write(request, obj, current)
            try:
                updated = await store.update(
                    obj, subresource=subresource, fence=fence_from_request(request), dry_run=request.state.dry_run
                )
            except ConflictError:
                if explicit or attempt == _PATCH_ATTEMPTS - 1:
                    raise
                continue
            if not request.state.dry_run:
                object_written(request, model, name)
            return object_response(updated, warnings=warnings)
        raise AssertionError("unreachable")

    async def delete(request: Request, name: str) -> Response:
        await check(request, "delete")
        resource_version = query_resource_version(request)
        raw = await request.body()
        uid = None
        if raw.strip():
            check_body_size(raw)
            try:
                options = loads_json(raw, "delete options")
            except (ValueError, UnicodeDecodeError) as error:
                raise BadRequestError(f"delete options are not valid JSON: {error}") from error
            check_storable(options, "delete options", BadRequestError)
            if not isinstance(options, dict):
                raise BadRequestError(
                    "delete options must be an object like "
                    f'{{"preconditions": {{"resource_version": "42"}}}}, got {json_type(options)}'
                )
            preconditions = options.get("preconditions")
            if preconditions is not None and not isinstance(preconditions, dict):
                raise BadRequestError(
                    f'preconditions must be an object like {{"resource_version": "42"}}, got {json_type(preconditions)}'
                )
            if preconditions:
                for spelling in ("resource_version", "resourceVersion"):
                    if preconditions.get(spelling) not in (None, ""):
                        resource_version = Store.parse_resource_version(
                            preconditions[spelling], f"preconditions.{spelling}"
                        )
                        break
                uid = preconditions.get("uid")
                if uid is not None and not isinstance(uid, str):
                    raise BadRequestError(
                        f"preconditions.uid must be a string holding the object's metadata.uid, got {json_type(uid)}"
                    )
        deleted = await get_store(request).delete(
            model, namespace_of(request), name, resource_version, fence=fence_from_request(request), uid=uid or None
        )
        object_written(request, model, name)
        # An object with finalizers stays until they are removed, so the response is 202, as in Kubernetes.
        return object_response(deleted, status_code=202 if deleted.metadata.finalizers else 200)

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
