"""Prometheus metrics of one API server process, in a registry of its own."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "skyshift_apiserver_requests_total",
            "API requests by route template, method and HTTP status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "skyshift_apiserver_request_duration_seconds",
            "Time to the end of the response for non-watch API requests.",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.open_watches = Gauge(
            "skyshift_apiserver_open_watches", "Watch streams open now, by kind.", ["kind"], registry=self.registry
        )
        # Labelled children by label values: `labels()` costs microseconds on every request, and the
        # label sets are few (route templates x methods x codes).
        self._request_counters: dict[tuple[str, str, str], Counter] = {}
        self._latency_histograms: dict[tuple[str, str], Histogram] = {}

    def count_request(self, route: str, method: str, code: str) -> None:
        key = (route, method, code)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(route, method, code)
        counter.inc()

    def observe_latency(self, route: str, method: str, seconds: float) -> None:
        key = (route, method)
        histogram = self._latency_histograms.get(key)
        if histogram is None:
            histogram = self._latency_histograms[key] = self.latency.labels(route, method)
        histogram.observe(seconds)


class MetricsMiddleware:
    """Count requests by their route template (not the raw path, which would explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500
        watch = "watch=true" in scope.get("query_string", b"").decode("latin-1").lower()

        async def send_and_record(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.count_request(template, method, str(code))
            if not watch:
                self.metrics.observe_latency(template, method, time.perf_counter() - start)
