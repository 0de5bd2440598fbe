"""The API server: a stateless FastAPI application over the etcd store.

Any number of API server processes may serve one etcd; they share no state but etcd.
`create_app` builds the application; `skyshift api-server` runs it under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from skyshift_core import __version__
from skyshift_core.auth import passwords
from skyshift_core.auth.middleware import AuthMiddleware
from skyshift_core.auth.routes import router as auth_router
from skyshift_core.auth.service import AuthService, AuthSettings, authorize
from skyshift_core.api.fast_routes import SkyShiftApi
from skyshift_core.api.jobs import router as jobs_router
from skyshift_core.api.leases import router as lease_router
from skyshift_core.api.metrics import ApiMetrics, MetricsMiddleware
from skyshift_core.api.resources import build_router, json_response
from skyshift_core.api.status import error_response, routing_error_body, status_body
from skyshift_core.api.watch import WatchDrain
from skyshift_core.errors import AlreadyExistsError, SkyShiftError, UnavailableError
from skyshift_core.objects import Namespace, kinds
from skyshift_core.objects.meta import DEFAULT_NAMESPACE
from skyshift_core.store import Store
from skyshift_core.store.etcd import TooLargeResourceVersionError
from skyshift_core.store.keys import ROOT
from skyshift_core.store.tls import EtcdTls

logger = logging.getLogger(__name__)

# Seconds the API server waits at startup for its first writes to etcd before it listens anyway.
INITIALIZE_WAIT = 2.0
# Seconds /readyz waits for etcd before it responds 503. The store alone would retry for up to
# `Store.deadline` (15 s by default), far longer than a readiness probe waits. Kubernetes' probe
# timeoutSeconds defaults to 1 s, so a probe of /readyz needs a timeoutSeconds above this bound.
READINESS_TIMEOUT = 2.0
# Methods tried when a 405 response lists the methods that the request's path allows.
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass
class ApiSettings:
    etcd_endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    etcd_root: str = ROOT
    # Seconds between bookmarks on an idle watch stream.
    bookmark_interval: float = 10.0
    etcd_username: str | None = None
    etcd_password: str | None = None
    # etcd client TLS (PEM files). A CA file turns TLS on, and a certificate with its key is for etcd's
    # --client-cert-auth.
    etcd_ca_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_key_file: str | None = None
    etcd_server_name: str | None = None
    # HTTPS for the API itself (PEM files); `serve` passes them to uvicorn.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)

    def etcd_tls(self) -> EtcdTls | None:
        if self.etcd_ca_file is None:
            if self.etcd_cert_file or self.etcd_key_file:
                raise ValueError("etcd client certificates need the etcd CA file too: set etcd_ca_file")
            return None
        return EtcdTls(self.etcd_ca_file, self.etcd_cert_file, self.etcd_key_file, self.etcd_server_name)


def create_app(settings: ApiSettings) -> FastAPI:
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(
            settings.etcd_endpoints,
            root=settings.etcd_root,
            username=settings.etcd_username,
            password=settings.etcd_password,
            tls=settings.etcd_tls(),
        )
        app.state.store = store
        app.state.auth = AuthService(store, settings.auth)
        await asyncio.to_thread(passwords.warm_up)
        endpoints = ", ".join(settings.etcd_endpoints)
        initializing = asyncio.ensure_future(_initialize(store, endpoints))
        app.state.initializing = initializing
        # Wait briefly, so that a server on a working etcd serves its first request initialized; with
        # etcd down it listens anyway, /healthz responds, and /readyz reports what it waits for.
        done, _ = await asyncio.wait({initializing}, timeout=INITIALIZE_WAIT)
        if done:
            logger.info("API server initialized; etcd at %s", endpoints)
        else:
            logger.warning(
                "API server listening before etcd at %s responded; it writes the default namespace and the built-in "
                "Roles once etcd responds, and /readyz reports 503 until then", endpoints,
            )  # fmt: skip
        try:
            yield
        finally:
            initializing.cancel()
            await asyncio.gather(initializing, return_exceptions=True)
            await store.close()
            app.state.auth.close()

    app = SkyShiftApi(
        title="SkyShift API",
        version=__version__,
        description="Create, read, update, patch, delete, list and watch SkyShift objects.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    # Ends the open watch streams when the server shuts down (see skyshift_core.api.server).
    app.state.watch_drain = WatchDrain()
    endpoints = ", ".join(settings.etcd_endpoints)
    readiness = _Readiness()
    # Authentication runs inside the metrics middleware, so rejected requests are counted too.
    app.add_middleware(AuthMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(SkyShiftError)
    async def handle_skyshift_error(request: Request, error: SkyShiftError) -> Response:
        # A resource_version that etcd has not reached is the client's mistake, not the server's.
        if error.status_code >= 500 and not isinstance(error, TooLargeResourceVersionError):
            logger.error("%s %s failed: %s", request.method, request.url.path, error.message)
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def handle_validation_error(request: Request, error: RequestValidationError) -> Response:
        # A body that is not JSON at all is malformed (400), as on the resource routes.
        for item in error.errors():
            if item["type"] == "json_invalid":
                reason = (item.get("ctx") or {}).get("error", item["msg"])
                message = f"request body is not valid JSON: {reason} (at character {item['loc'][-1]})"
                return json_response(status_body(400, "BadRequest", message), 400)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        return json_response(status_body(422, "Invalid", f"invalid request: {problems}"), 422)

    @app.exception_handler(HTTPException)
    async def handle_http_exception(request: Request, error: HTTPException) -> Response:
        # Routing raises these: 404 for a path that no route matches, and 405 for a method that
        # the path's routes do not accept.
        headers = dict(error.headers or {})
        allowed: list[str] = []
        if error.status_code == 405:
            # Starlette's Allow header lists the methods of the first route that matched the path
            # only, so the methods of all its routes are collected.
            allowed = _allowed_methods(request.app, request.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
            else:
                allowed = [method.strip() for method in headers.get("Allow", "").split(",") if method.strip()]
        body = routing_error_body(error.status_code, request.method, request.url.path, str(error.detail), allowed)
        response = json_response(body, error.status_code)
        response.headers.update(headers)
        return response

    @app.exception_handler(ClientDisconnect)
    async def handle_client_gone(request: Request, error: ClientDisconnect) -> Response:
        # The client closed the connection before its request body arrived, so no response reaches it.
        # The metrics count it under 499, the code that nginx logs for a closed client connection.
        logger.info("%s %s: the client disconnected before sending its whole request", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def handle_unexpected(request: Request, error: Exception) -> Response:
        logger.exception("Unexpected error in %s %s", request.method, request.url.path)
        message = f"internal error while handling {request.method} {request.url.path}: {type(error).__name__}"
        return json_response(status_body(500, "InternalError", message), 500)

    # HEAD too, which some load balancers send; /livez is Kubernetes' newer name for /healthz.
    @app.api_route(
        "/healthz", methods=["GET", "HEAD"], tags=["health"], summary="Liveness: the process serves requests"
    )
    @app.api_route("/livez", methods=["GET", "HEAD"], tags=["health"], summary="Liveness, as /healthz")
    async def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.api_route("/version", methods=["GET", "HEAD"], tags=["health"], summary="The API server's version")
    async def version() -> Response:
        return json_response({"kind": "Version", "version": __version__})

    @app.api_route("/readyz", methods=["GET", "HEAD"], tags=["health"], summary="Readiness: etcd answers")
    async def readyz(request: Request) -> Response:
        initializing = getattr(request.app.state, "initializing", None)
        if initializing is not None and not initializing.done():
            message = (
                f"not ready: waiting for etcd at {endpoints} to write the default namespace and the built-in Roles; "
                "check that etcd runs and that this API server can reach it"
            )
            return json_response(status_body(503, "ServiceUnavailable", message), 503)
        try:
            # Not asyncio.wait_for, because up to Python 3.11 it can hide a cancellation of the
            # calling task that arrives as the awaited call finishes (fixed in Python 3.12).
            async with asyncio.timeout(READINESS_TIMEOUT):
                await request.app.state.store.ping()
        except TimeoutError:
            failure = f"no answer within {READINESS_TIMEOUT:g} s"
        except SkyShiftError as error:
            failure = error.message
        else:
            if not readiness.ready:
                logger.info("Ready again: etcd at %s responds", endpoints)
                readiness.ready = True
            return Response("ok", media_type="text/plain")

        message = (
            f"not ready: the readiness check of etcd at {endpoints} failed: {failure}; "
            "check that etcd runs and that this API server can reach it"
        )
        if readiness.ready:
            # Logged when readiness is lost, not on every probe, which may come every few seconds.
            logger.warning("Not ready: the readiness check of etcd at %s failed: %s", endpoints, failure)
            readiness.ready = False
        return json_response(status_body(503, "ServiceUnavailable", message), 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics (needs the get verb on resource 'metrics')")
    async def metrics_endpoint(request: Request) -> Response:
        await authorize(request, "get", "metrics")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/plugins", tags=["plugins"], summary="Installed plugins and whether they loaded")
    async def plugins_endpoint() -> Response:
        from skyshift_core.plugins import plugins_payload

        return json_response(plugins_payload())

    @app.get("/api/v1", tags=["discovery"], summary="Kinds served by this API")
    async def discovery() -> Response:
        resources = [
            {
                "kind": model.model_fields["kind"].default,
                "name": model.plural,
                "singular_name": model.singular,
                "short_names": list(model.short_names),
                "namespaced": model.namespaced,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for model in kinds().values()
        ]
        return json_response({"kind": "APIResourceList", "group_version": "v1", "resources": resources})

    def get_store(request: Request) -> Store:
        return request.app.state.store

    def get_metrics(request: Request) -> ApiMetrics:
        return request.app.state.metrics

    for model in kinds().values():
        app.include_router(build_router(model, get_store, get_metrics, settings.bookmark_interval))
    app.include_router(lease_router)
    app.include_router(jobs_router)
    app.include_router(auth_router)
    return app


@dataclass
class _Readiness:
    """The outcome of the last /readyz check, so only changes of readiness are logged."""

    ready: bool = True


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """List the methods for which some route of `app` matches `path` fully."""
    allowed = []
    for method in _HTTP_METHODS:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
        # Each route gets a scope of its own, because matching may add keys to it.
        if any(route.matches(dict(scope))[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


async def _initialize(store: Store, endpoints: str) -> None:
    """Write the default namespace and the built-in Roles, retrying until etcd responds."""
    from skyshift_core.auth.bootstrap import ensure_builtin_roles

    delay = 1.0
    while True:
        try:
            try:
                await store.create(Namespace(metadata={"name": DEFAULT_NAMESPACE}))
            except AlreadyExistsError:
                pass
            await ensure_builtin_roles(store)
            return
        except UnavailableError as error:
            logger.warning(
                "Could not write the default namespace and the built-in Roles to etcd at %s, retrying in %.0f s: %s",
                endpoints, delay, error.message,
            )  # fmt: skip
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)
