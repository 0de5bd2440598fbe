"""Direct dispatch of the resource routes, in front of FastAPI's own routing.

FastAPI resolves a request through its middleware stack, a linear scan of every route and its
dependency solver. For the resource routes (create, read, replace, patch, delete and list of every
kind), whose endpoints take only the request and the path parameters, that machinery cost about
half of the API server's CPU per request. `SkyShiftApi` looks these routes up by their path
segments in a table. It calls the same endpoint functions inside the same user middleware (metrics,
authentication and audit) and the same exception handlers, so responses, status codes, error bodies
and audit entries do not change. Every other request, and any path the table does not match
exactly, goes through FastAPI unchanged. The routes stay registered there for OpenAPI.

NOTE: directly dispatched requests skip FastAPI's own optional layers (OpenTelemetry and the
application-wide `max_body_size`); SkyShift configures neither, and `read_manifest` limits bodies.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# Scope key that carries a request's route match from `SkyShiftApi.__call__` to `_dispatch`.
_MATCH_KEY = "skyshift.direct_match"

# Marks an endpoint function that the table may call directly: it takes `request` and the path
# parameters as keyword arguments, has no FastAPI dependencies and reads its own body.
DIRECT_ATTRIBUTE = "skyshift_direct_route"


def direct_route(endpoint: Callable) -> Callable:
    """Mark `endpoint` for direct dispatch (see the module docstring) and return it."""
    setattr(endpoint, DIRECT_ATTRIBUTE, True)
    return endpoint


@dataclass(frozen=True)
class EarlierRoutes:
    """The routes registered before a direct route that FastAPI would try first for one method."""

    static_paths: frozenset[str]
    # Compiled path patterns; None stands for a route without one, which may match anything.
    patterns: tuple[Any, ...]

    def match(self, path: str) -> bool:
        if path in self.static_paths:
            return True
        return any(pattern is None or pattern.match(path) for pattern in self.patterns)


@dataclass(frozen=True)
class RouteEntry:
    route: APIRoute
    # Position in the application's route list: when two templates match, FastAPI picks the earlier.
    index: int
    earlier: EarlierRoutes


class ResourceRouteTable:
    """Resource routes keyed by (method, path template), matched by splitting the path at '/'.

    Only the shapes the resource routes use are matched: `/api/v1/{plural}`, `/api/v1/{plural}/{name}`,
    `/api/v1/{plural}/{name}/status` and the same below `/api/v1/namespaces/{namespace}/`. A route
    registered before a resource route could take the request in FastAPI, so those routes are
    checked first and a match sends the request to FastAPI.
    """

    def __init__(self, routes: list[Any]):
        self._entries: dict[tuple[str, str], RouteEntry] = {}
        earlier: list[Any] = []
        cache: dict[tuple[int, str], EarlierRoutes] = {}
        for index, route in enumerate(_flatten(routes)):
            if not (
                isinstance(route, APIRoute)
                and getattr(route.endpoint, DIRECT_ATTRIBUTE, False)
                and not route.dependencies
            ):
                earlier.append(route)
                continue
            for method in route.methods:
                key = (len(earlier), method)
                if key not in cache:
                    cache[key] = _earlier_routes(earlier, method)
                self._entries.setdefault((method, route.path), RouteEntry(route, index, cache[key]))

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, method: str, path: str) -> tuple[RouteEntry, dict[str, str]] | None:
        """Return the route FastAPI would choose for this request and its path parameters, or None."""
        parts = path.split("/")
        count = len(parts)
        if count < 4 or parts[1] != "api" or parts[2] != "v1" or "" in parts[3:]:
            return None
        candidates: list[tuple[str, dict[str, str]]] = []
        if count == 4:
            candidates.append((f"/api/v1/{parts[3]}", {}))
        elif count == 5:
            candidates.append((f"/api/v1/{parts[3]}/{{name}}", {"name": parts[4]}))
        elif count == 6:
            if parts[3] == "namespaces":
                candidates.append((f"/api/v1/namespaces/{{namespace}}/{parts[5]}", {"namespace": parts[4]}))
            if parts[5] == "status":
                candidates.append((f"/api/v1/{parts[3]}/{{name}}/status", {"name": parts[4]}))
        elif count == 7 and parts[3] == "namespaces":
            params = {"namespace": parts[4], "name": parts[6]}
            candidates.append((f"/api/v1/namespaces/{{namespace}}/{parts[5]}/{{name}}", params))
        elif count == 8 and parts[3] == "namespaces" and parts[7] == "status":
            params = {"namespace": parts[4], "name": parts[6]}
            candidates.append((f"/api/v1/namespaces/{{namespace}}/{parts[5]}/{{name}}/status", params))

        found: tuple[RouteEntry, dict[str, str]] | None = None
        for template, params in candidates:
            entry = self._entries.get((method, template))
            if entry is not None and (found is None or entry.index < found[0].index):
                found = (entry, params)
        if found is None or found[0].earlier.match(path):
            return None
        return found


def _flatten(routes: list[Any]) -> list[Any]:
    """List routes in FastAPI's matching order, with those of included routers in their place.

    FastAPI 0.165 keeps an included router as one `_IncludedRouter` entry, whose `original_router`
    contains the routes. Older versions, such as 0.110, copy the routes into the application.
    An inclusion with a prefix or dependencies stays one opaque entry, so its routes are never
    dispatched directly and it sends every later request to FastAPI.
    """
    flat: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        context = getattr(route, "include_context", None)
        if inner is not None and not getattr(context, "prefix", "") and not getattr(context, "dependencies", None):
            flat.extend(_flatten(inner.routes))
        else:
            flat.append(route)
    return flat


def _earlier_routes(routes: list[Any], method: str) -> EarlierRoutes:
    static: set[str] = set()
    patterns: list[Any] = []
    for route in routes:
        methods = getattr(route, "methods", None)
        if methods is not None and method not in methods:
            continue  # Starlette matches it only partially and goes on to the later routes.
        path = getattr(route, "path", None)
        if isinstance(path, str) and getattr(route, "param_convertors", None) == {} and not hasattr(route, "routes"):
            static.add(path)
        else:
            # A mount, a route with parameters or something unknown: use its own regex.
            patterns.append(getattr(route, "path_regex", None))
    return EarlierRoutes(frozenset(static), tuple(patterns))


class ServerErrorKeepingConnection(ServerErrorMiddleware):
    """Starlette's last-resort handler of unexpected exceptions, without its final re-raise.

    Starlette responds 500 and then raises the exception again, so that the server logs it. uvicorn
    then closes the connection, so a client that keeps connections alive fails its next request on
    it. SkyShift's handler logs the traceback itself, so the exception ends here once the 500
    response is sent. An exception after the response has started still propagates, because the
    connection can carry nothing more for that request.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.handler is None or self.debug:
            await super().__call__(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as error:
            if started:
                raise
            request = Request(scope)
            if inspect.iscoroutinefunction(self.handler):
                response = await self.handler(request, error)
            else:
                response = self.handler(request, error)
            await response(scope, receive, send)


class SkyShiftApi(FastAPI):
    """FastAPI with direct dispatch of the routes whose endpoints are marked by `direct_route`.

    The table and its middleware stack are built on the first request, as Starlette builds its own,
    so routes and middleware added after construction are included. Watch requests, which are
    long-lived and few, and applications mounted below a root path always go through FastAPI.
    Setting `direct_dispatch` to False sends every request through FastAPI.
    """

    direct_dispatch: bool = True
    _direct_table: ResourceRouteTable | None = None
    _direct_stack: ASGIApp | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if type(stack) is ServerErrorMiddleware:
            return ServerErrorKeepingConnection(stack.app, handler=stack.handler, debug=stack.debug)
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.direct_dispatch
            and not scope.get("root_path")
            and b"watch" not in scope.get("query_string", b"")
        ):
            table = self._direct_table or self._build_direct()
            found = table.match(scope["method"], scope["path"])
            if found is not None:
                scope["app"] = self
                scope[_MATCH_KEY] = found
                await self._direct_stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _build_direct(self) -> ResourceRouteTable:
        table = ResourceRouteTable(list(self.router.routes))
        error_handler = None
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
        # The same order as Starlette's stack: error handling outside, then the user middleware.
        app: ASGIApp = self._dispatch
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        self._direct_stack = ServerErrorKeepingConnection(app, handler=error_handler, debug=self.debug)
        self._direct_table = table
        logger.debug("Direct dispatch of %d resource routes", len(table))
        return table

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routing happens here, inside the user middleware, as it does in FastAPI: a request that
        # authentication rejects has no route, and the metrics count it as unmatched.
        entry, params = scope.pop(_MATCH_KEY)
        scope["router"] = self.router
        scope["route"] = entry.route
        scope["endpoint"] = entry.route.endpoint
        scope["path_params"] = params
        request = Request(scope, receive)
        try:
            response = await entry.route.endpoint(request, **params)
        except Exception as error:
            handler = self._exception_handler(error)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, error)
            else:
                response = handler(request, error)
        await response(scope, receive, send)

    def _exception_handler(self, error: Exception) -> Callable | None:
        """Return the handler that Starlette's ExceptionMiddleware would pick for `error`, if any."""
        handlers = self.exception_handlers
        if isinstance(error, HTTPException) and error.status_code in handlers:
            return handlers[error.status_code]
        for cls in type(error).__mro__:
            if cls is Exception:
                return None  # Handled by ServerErrorKeepingConnection, which responds 500.
            if cls in handlers:
                return handlers[cls]
        return None
