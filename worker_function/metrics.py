"""Prometheus metrics of the function: ``GET /metrics``.

- ``libra_function_analyses_total{outcome}``: every POST /v1/analyze by outcome, ``ok`` or the
  error code of the answer (fetch_failed, too_large, unauthorized, overloaded, ...), and every
  item of a served batch by its own outcome;
- ``libra_function_batches_total{outcome}``: every POST /v1/analyze:batch, ``ok`` or the error
  code of a batch refused as a whole;
- ``libra_function_analyses_in_flight``: analyses in progress (admission control);
- ``libra_function_request_duration_seconds{route,method,status}``: latency per route template.

Labels never hold a URL, host or hash value: the route is the template, the outcome a code
that must look like one (anything else is counted as ``other``). Each app has its own registry.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ANALYZE_PATH = "/v1/analyze"
BATCH_PATH = "/v1/analyze:batch"  # its items are counted as analyses by the batch itself
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_ERROR_BODY = 4096  # error answers are small JSON; larger bodies are not parsed
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 60.0)


def error_code(body: bytes) -> str:
    """The ``error.code`` of a JSON error answer, as a safe label value."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "other"
    return code if isinstance(code, str) and _CODE.match(code) else "other"


class FunctionMetrics:
    def __init__(self, in_flight: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.analyses = Counter(
            "libra_function_analyses",
            "POST /v1/analyze answers by outcome: ok or the error code.",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "libra_function_request_duration_seconds",
            "Request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batches = Counter(
            "libra_function_batches",
            "POST /v1/analyze:batch answers by outcome: ok (items counted as analyses) or the "
            "error code of a refused batch.",
            ["outcome"],
            registry=self.registry,
        )
        if in_flight is not None:
            gauge = Gauge(
                "libra_function_analyses_in_flight",
                "Analyses (fetch + decode) in progress.",
                registry=self.registry,
            )
            gauge.set_function(in_flight)

    def count_analysis(self, outcome: str) -> None:
        """One analysis done (a batch item): ``ok`` or its error code."""
        self.analyses.labels(outcome if _CODE.match(outcome) else "other").inc()


class MetricsMiddleware:
    """Times every request and counts /v1/analyze outcomes (reading the small error bodies)."""

    def __init__(self, app: ASGIApp, metrics: FunctionMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status != 200:
                body.extend(message.get("body", b"")[: max(0, _MAX_ERROR_BODY - len(body))])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "other"
            self.metrics.latency.labels(route, method, str(status)).observe(
                time.perf_counter() - started
            )
            if route == ANALYZE_PATH and method == "POST":
                outcome = "ok" if status == 200 else error_code(bytes(body))
                self.metrics.analyses.labels(outcome).inc()
            elif route == BATCH_PATH and method == "POST":
                outcome = "ok" if status == 200 else error_code(bytes(body))
                self.metrics.batches.labels(outcome).inc()


def install(app: FastAPI, metrics: FunctionMetrics) -> None:
    """The middleware and the ``GET /metrics`` route."""
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
