"""FastAPI routes of the fake API server: Kubernetes REST paths, watch streams, logs and discovery.

`build_app` is called by `FakeApiServer`; the routes read and write its `ObjectStore` and
`LogStore`. Every error leaves as a Kubernetes `Status` body with the matching HTTP code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from . import errors
from .logs import LogKey, LogLine
from .pod_exec import handle_exec
from .resources import (
    ALL_RESOURCES,
    PODS,
    ResourceType,
    api_group,
    api_group_list,
    api_resource_list,
)
from .selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector

if TYPE_CHECKING:
    from .fake_apiserver import FakeApiServer

logger = logging.getLogger(__name__)

_TRUE = {"true", "True", "TRUE", "t", "T", "1"}
_FALSE = {"false", "False", "FALSE", "f", "F", "0"}
_CLOSE = None  # queue item that ends a stream

Handler = Callable[[Request], Awaitable[Response]]


def parse_bool(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f"invalid value {value!r} for query parameter {name}: expected true or false")


def parse_int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid value {value!r} for query parameter {name}: expected an integer") from None


def status_response(error: errors.ApiError) -> JSONResponse:
    return JSONResponse(error.to_status(), status_code=error.code)


def _guard(handler: Handler) -> Handler:
    """Turn ApiError into its Status response and any other exception into a logged 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except errors.ApiError as err:
            return status_response(err)
        except Exception as err:
            logger.exception("Fake API server failed on %s %s", request.method, request.url.path)
            return status_response(
                errors.ApiError(500, "InternalError", f"internal error in the fake API server: {err!r}")
            )

    return guarded


async def read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    content_type = request.headers.get("content-type", "application/json")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as err:
        raise errors.bad_request(
            f"the request body is not valid {'YAML' if 'yaml' in content_type else 'JSON'}: {err}"
        ) from None


class ApiRoutes:
    """The request handlers, bound to one FakeApiServer."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.store = server.store

    # Discovery and health

    def register_static(self, app: FastAPI) -> None:
        async def api_versions(request: Request) -> Response:
            address = f"{request.url.hostname}:{request.url.port}"
            return JSONResponse(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
                }
            )

        async def core_resources(request: Request) -> Response:
            return JSONResponse(api_resource_list("", "v1"))

        async def groups(request: Request) -> Response:
            return JSONResponse(api_group_list())

        async def version(request: Request) -> Response:
            return JSONResponse(self.server.version_info)

        async def healthy(request: Request) -> Response:
            return PlainTextResponse("ok")

        # The official client asks for /api/ and /apis/ (CoreApi, ApisApi); kube-apiserver serves both spellings.
        for path in ("/api", "/api/"):
            app.add_api_route(path, _guard(api_versions), methods=["GET"])
        app.add_api_route("/api/v1", _guard(core_resources), methods=["GET"])
        for path in ("/apis", "/apis/"):
            app.add_api_route(path, _guard(groups), methods=["GET"])
        for path in ("/version", "/version/"):
            app.add_api_route(path, _guard(version), methods=["GET"])
        for path in ("/healthz", "/livez", "/readyz"):
            app.add_api_route(path, _guard(healthy), methods=["GET"])
        for group in sorted({r.group for r in ALL_RESOURCES if r.group}):
            self._register_group(app, group)

    def _register_group(self, app: FastAPI, group: str) -> None:
        async def group_document(request: Request) -> Response:
            return JSONResponse(api_group(group))

        app.add_api_route(f"/apis/{group}", _guard(group_document), methods=["GET"])
        for version in sorted({r.version for r in ALL_RESOURCES if r.group == group}):

            async def resource_list(request: Request, version: str = version) -> Response:
                return JSONResponse(api_resource_list(group, version))

            app.add_api_route(f"/apis/{group}/{version}", _guard(resource_list), methods=["GET"])

    # Resource routes

    def register_resource(self, app: FastAPI, resource: ResourceType) -> None:
        base = resource.base_path
        if resource.namespaced:
            collection = f"{base}/namespaces/{{namespace}}/{resource.plural}"
            app.add_api_route(f"{base}/{resource.plural}", _guard(self._collection_handler(resource)), methods=["GET"])
        else:
            collection = f"{base}/{resource.plural}"
        item = f"{collection}/{{name}}"
        app.add_api_route(collection, _guard(self._collection_handler(resource)), methods=["GET", "POST", "DELETE"])
        app.add_api_route(item, _guard(self._item_handler(resource, None)), methods=["GET", "PUT", "PATCH", "DELETE"])
        if "status" in resource.subresources:
            app.add_api_route(
                f"{item}/status", _guard(self._item_handler(resource, "status")), methods=["GET", "PUT", "PATCH"]
            )
        if "scale" in resource.subresources:
            app.add_api_route(f"{item}/scale", _guard(self._scale_handler(resource)), methods=["GET", "PUT", "PATCH"])
        if resource is PODS:
            app.add_api_route(f"{item}/log", _guard(self._read_log), methods=["GET"])
            app.add_api_route(f"{item}/binding", _guard(self._bind), methods=["POST"])

            async def exec_endpoint(websocket: WebSocket) -> None:
                await handle_exec(self.server, websocket)

            app.add_api_websocket_route(f"{item}/exec", exec_endpoint)

    def _collection_handler(self, resource: ResourceType) -> Handler:
        async def handle(request: Request) -> Response:
            namespace = request.path_params.get("namespace")
            if request.method == "POST":
                body = await read_body(request)
                created = self.store.create(resource, namespace, body, dry_run=self._dry_run(request))
                return JSONResponse(created, status_code=201)
            label_selector = parse_label_selector(request.query_params.get("labelSelector"))
            field_selector = parse_field_selector(
                request.query_params.get("fieldSelector"), resource.selectable_fields(), resource.plural
            )
            if request.method == "DELETE":
                options = await self._delete_options(request)
                return JSONResponse(
                    self.store.delete_collection(resource, namespace, label_selector, field_selector, **options)
                )
            if parse_bool(request, "watch"):
                return await self._watch(request, resource, namespace, label_selector, field_selector)
            listed = self.store.list(
                resource,
                namespace,
                label_selector,
                field_selector,
                resource_version=request.query_params.get("resourceVersion"),
                resource_version_match=request.query_params.get("resourceVersionMatch"),
                limit=parse_int(request, "limit"),
                continue_token=request.query_params.get("continue"),
            )
            return JSONResponse(listed)

        return handle

    def _item_handler(self, resource: ResourceType, subresource: str | None) -> Handler:
        async def handle(request: Request) -> Response:
            namespace, name = request.path_params.get("namespace"), request.path_params["name"]
            dry_run = self._dry_run(request)
            if request.method == "GET":
                return JSONResponse(self.store.get(resource, namespace, name))
            if request.method == "PUT":
                body = await read_body(request)
                updated = self.store.update(resource, namespace, name, body, subresource=subresource, dry_run=dry_run)
                return JSONResponse(updated)
            if request.method == "PATCH":
                body = await read_body(request)
                content_type = request.headers.get("content-type", "")
                patched = self.store.patch(
                    resource, namespace, name, body, content_type, subresource=subresource, dry_run=dry_run
                )
                return JSONResponse(patched)
            options = await self._delete_options(request)
            result = self.store.delete(resource, namespace, name, **options)
            headers = {}
            if resource.default_propagation == "Orphan" and options.get("propagation_policy") is None:
                headers["Warning"] = (
                    '299 - "child pods are preserved by default when jobs are deleted; set '
                    'propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning"'
                )
            return JSONResponse(result, headers=headers)

        return handle

    @staticmethod
    def _dry_run(request: Request) -> bool:
        values = request.query_params.getlist("dryRun")
        for value in values:
            if value != "All":
                raise errors.bad_request(f'invalid dryRun value {value!r}: the only supported value is "All"')
        return bool(values)

    async def _delete_options(self, request: Request) -> dict[str, Any]:
        body = await read_body(request) or {}
        if not isinstance(body, dict):
            raise errors.bad_request("the DELETE body must be a DeleteOptions object")
        policy = request.query_params.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = parse_bool(request, "orphanDependents")
        if orphan is None:
            orphan = body.get("orphanDependents")
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        grace = parse_int(request, "gracePeriodSeconds")
        if grace is None:
            grace = body.get("gracePeriodSeconds")
        dry_run = self._dry_run(request) or body.get("dryRun") == ["All"]
        return {
            "propagation_policy": policy,
            "grace_period_seconds": grace,
            "preconditions": body.get("preconditions"),
            "dry_run": dry_run,
        }

    def _scale_handler(self, resource: ResourceType) -> Handler:
        def to_scale(obj: dict[str, Any]) -> dict[str, Any]:
            metadata = obj["metadata"]
            selector = ",".join(
                f"{k}={v}" for k, v in ((obj["spec"].get("selector") or {}).get("matchLabels") or {}).items()
            )
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    key: metadata[key]
                    for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                    if key in metadata
                },
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": selector},
            }

        async def handle(request: Request) -> Response:
            namespace, name = request.path_params.get("namespace"), request.path_params["name"]
            current = self.store.get(resource, namespace, name)
            if request.method == "GET":
                return JSONResponse(to_scale(current))
            body = await read_body(request)
            if request.method == "PATCH":
                from .patch import apply_patch

                body = apply_patch(to_scale(current), body, request.headers.get("content-type", ""))
            replicas = ((body or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec.replicas",
                            "message": f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                        }
                    ],
                )
            version = ((body or {}).get("metadata") or {}).get("resourceVersion")
            current["spec"]["replicas"] = replicas
            if version:
                current["metadata"]["resourceVersion"] = version
            updated = self.store.update(resource, namespace, name, current, dry_run=self._dry_run(request))
            return JSONResponse(to_scale(updated))

        return handle

    async def _bind(self, request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        body = await read_body(request) or {}
        target = (body.get("target") or {}).get("name")
        if not target:
            raise errors.invalid(
                "",
                "Binding",
                name,
                [{"reason": "FieldValueRequired", "field": "target.name", "message": "Required value"}],
            )
        self.store.bind(namespace, name, target)
        return JSONResponse(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, status_code=201
        )

    # Watch

    async def _watch(
        self,
        request: Request,
        resource: ResourceType,
        namespace: str | None,
        label_selector: LabelSelector,
        field_selector: FieldSelector,
    ) -> Response:
        timeout = parse_int(request, "timeoutSeconds")
        if timeout is None or timeout <= 0:
            timeout = self.server.default_watch_timeout_seconds
        bookmarks = bool(parse_bool(request, "allowWatchBookmarks"))
        send_initial = parse_bool(request, "sendInitialEvents")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def deliver(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                logger.debug("Dropped a watch event: the server's event loop is closed")

        try:
            watcher, initial, initial_version = self.store.open_watch(
                resource,
                namespace,
                label_selector,
                field_selector,
                request.query_params.get("resourceVersion"),
                deliver,
                send_initial,
            )
        except errors.ApiError as err:
            if err.code != 410:
                raise
            # kube-apiserver reports an expired version inside the stream, as an ERROR event.
            return StreamingResponse(self._single_event("ERROR", err.to_status()), media_type="application/json")
        self.server.register_stream(deliver)

        def bookmark(version: int, initial_end: bool = False) -> str:
            metadata: dict[str, Any] = {"resourceVersion": str(version)}
            if initial_end:
                metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
            return _encode_event(
                "BOOKMARK", {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}
            )

        async def stream() -> AsyncIterator[str]:
            deadline = time.monotonic() + timeout
            try:
                for event_type, obj in initial:
                    yield _encode_event(event_type, obj)
                if send_initial and bookmarks:
                    yield bookmark(initial_version, initial_end=True)
                next_bookmark = time.monotonic() + self.server.bookmark_interval_seconds
                while True:
                    now = time.monotonic()
                    if now >= deadline:
                        return
                    wait = deadline - now
                    if bookmarks:
                        wait = min(wait, max(0.0, next_bookmark - now))
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=wait)
                    except TimeoutError:
                        if bookmarks and time.monotonic() >= next_bookmark:
                            # Requested through the store, so the bookmark is queued behind every event up to its version.
                            self.store.request_bookmark(watcher)
                            next_bookmark = time.monotonic() + self.server.bookmark_interval_seconds
                        continue
                    if item is _CLOSE:
                        return
                    if item[0] == "BOOKMARK":
                        yield bookmark(item[1])
                    else:
                        yield _encode_event(*item)
            finally:
                self.store.close_watch(watcher)
                self.server.unregister_stream(deliver)

        return StreamingResponse(stream(), media_type="application/json")

    @staticmethod
    async def _single_event(event_type: str, obj: dict[str, Any]) -> AsyncIterator[str]:
        yield _encode_event(event_type, obj)

    # Logs

    async def _read_log(self, request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        pod = self.store.get(PODS, namespace, name)
        key = self._log_key(request, pod)
        if key is None:
            return PlainTextResponse("")
        follow = bool(parse_bool(request, "follow"))
        tail_lines = parse_int(request, "tailLines")
        since_seconds = parse_int(request, "sinceSeconds")
        since_time = request.query_params.get("sinceTime")
        timestamps = bool(parse_bool(request, "timestamps"))
        limit_bytes = parse_int(request, "limitBytes")
        cutoff = None
        if since_seconds is not None:
            cutoff = datetime.now(UTC) - timedelta(seconds=since_seconds)
        elif since_time:
            try:
                cutoff = datetime.fromisoformat(since_time)
            except ValueError:
                raise errors.bad_request(f"invalid sinceTime {since_time!r}: expected an RFC 3339 time") from None

        def render(lines: list[LogLine]) -> str:
            selected = [line for line in lines if cutoff is None or line.time >= cutoff]
            if tail_lines is not None:
                selected = selected[-tail_lines:] if tail_lines > 0 else []
            return "".join(_render_line(line, timestamps) for line in selected)

        if not follow:
            lines, _ = self.server.logs.read(key)
            text = render(lines)
            if limit_bytes is not None:
                text = text.encode()[:limit_bytes].decode(errors="ignore")
            return PlainTextResponse(text)

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def listener(line: LogLine | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            except RuntimeError:
                logger.debug("Dropped a log line: the server's event loop is closed")

        existing, finished = self.server.logs.follow(key, listener)
        self.server.register_stream(listener)

        async def stream() -> AsyncIterator[str]:
            sent = 0
            try:
                chunk = render(existing)
                for piece in _limited(chunk, limit_bytes, sent):
                    sent += len(piece.encode())
                    yield piece
                if finished:
                    return
                while limit_bytes is None or sent < limit_bytes:
                    line = await queue.get()
                    if line is None:
                        return
                    for piece in _limited(_render_line(line, timestamps), limit_bytes, sent):
                        sent += len(piece.encode())
                        yield piece
            finally:
                self.server.logs.unfollow(key, listener)
                self.server.unregister_stream(listener)

        return StreamingResponse(stream(), media_type="text/plain")

    def _log_key(self, request: Request, pod: dict[str, Any]) -> LogKey | None:
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]]
        container = request.query_params.get("container")
        if not container:
            if len(pod["spec"]["containers"]) != 1:
                choices = " ".join(c["name"] for c in pod["spec"]["containers"])
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{choices}]"
                )
            container = pod["spec"]["containers"][0]["name"]
        if container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if not pod["spec"].get("nodeName"):
            return None
        status = pod.get("status") or {}
        statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        container_status = next((s for s in statuses if s.get("name") == container), None)
        restarts = (container_status or {}).get("restartCount", 0)
        if parse_bool(request, "previous"):
            if restarts == 0:
                raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return pod["metadata"]["uid"], container, restarts - 1
        state = (container_status or {}).get("state") or {}
        last = (container_status or {}).get("lastState") or {}
        if "running" not in state and "terminated" not in state and not last:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "trying and failing to pull image"
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        return pod["metadata"]["uid"], container, restarts


def _render_line(line: LogLine, timestamps: bool) -> str:
    if timestamps:
        return f"{line.time.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')} {line.text}\n"
    return f"{line.text}\n"


def _limited(text: str, limit_bytes: int | None, sent: int) -> list[str]:
    if not text:
        return []
    if limit_bytes is None:
        return [text]
    room = limit_bytes - sent
    if room <= 0:
        return []
    return [text.encode()[:room].decode(errors="ignore")]


def _encode_event(event_type: str, obj: dict[str, Any]) -> str:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n"


def build_app(server: FakeApiServer) -> FastAPI:
    """Build the ASGI app for `server`, with the optional bearer-token check in front."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    routes = ApiRoutes(server)
    routes.register_static(app)
    for resource in ALL_RESOURCES:
        routes.register_resource(app, resource)

    @app.exception_handler(404)
    async def unknown_path(request: Request, exc: Exception) -> Response:
        return status_response(errors.ApiError(404, "NotFound", "the server could not find the requested resource"))

    @app.exception_handler(405)
    async def unsupported_method(request: Request, exc: Exception) -> Response:
        return status_response(errors.method_not_allowed(request.method, request.url.path))

    return BearerTokenMiddleware(app, server)


_PUBLIC_PATHS = {"/healthz", "/livez", "/readyz", "/version", "/version/"}


class BearerTokenMiddleware:
    """Reject requests without `Authorization: Bearer <token>` when the server has a token.

    As in kube-apiserver's default RBAC, the health endpoints and /version stay public.
    """

    def __init__(self, app: Any, server: FakeApiServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        token = self.server.token
        if scope["type"] in ("http", "websocket") and token and scope["path"] not in _PUBLIC_PATHS:
            headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
            scheme, _, presented = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or presented.strip() != token:
                body = json.dumps(errors.unauthorized().to_status()).encode()
                start_type = "http.response.start" if scope["type"] == "http" else "websocket.http.response.start"
                body_type = "http.response.body" if scope["type"] == "http" else "websocket.http.response.body"
                if scope["type"] == "websocket":
                    await receive()  # the websocket.connect message must be read before denying
                await send({"type": start_type, "status": 401, "headers": [(b"content-type", b"application/json")]})
                await send({"type": body_type, "body": body})
                return
        await self.app(scope, receive, send)
