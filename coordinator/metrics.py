"""Prometheus metrics of the coordinator: ``GET /metrics``.

- ``libra_coordinator_reports_ingested_total{outcome}``: every envelope posted to
  /v1/reports and /v1/reports/batch by outcome: ``accepted``, ``duplicate`` or the rejection
  code (bad_signature, unknown_key, sequence_regression, stale_timestamp, ...);
- ``libra_coordinator_request_duration_seconds{route,method,status}``: latency per route
  template;
- read from the database at scrape time: nodes by status, stored reports, seconds since the
  newest report, and the largest report age among active nodes (report lag).

No label holds a node id, URL, host, token or hash value. Each app has its own registry.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import new_session
from .models import NodeStatus
from .registry import list_nodes

REPORT_ROUTES = frozenset({"/v1/reports", "/v1/reports/batch"})
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_BODY = 1024 * 1024  # an ack is tiny; a batch answer of 10,000 items stays under this
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Clock = Callable[[], datetime]


def _label(value: Any) -> str:
    return value if isinstance(value, str) and _CODE.match(value) else "other"


def ingest_outcomes(body: bytes) -> list[str]:
    """Outcomes in a /v1/reports or /v1/reports/batch answer: ack status or error code."""
    try:
        data = json.loads(body)
    except ValueError:
        return ["other"]
    if not isinstance(data, dict):
        return ["other"]
    items = data["results"] if isinstance(data.get("results"), list) else [data]
    outcomes = []
    for item in items:
        if not isinstance(item, dict):
            outcomes.append("other")
        elif isinstance(item.get("error"), dict):
            outcomes.append(_label(item["error"].get("code")))
        else:
            outcomes.append(_label(item.get("status")))
    return outcomes


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _RegistryCollector(Collector):
    """Node counts and report lag, read from the database at scrape time."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with new_session(self._engine) as session:
            views = list_nodes(session)
        now = self._clock()
        nodes = GaugeMetricFamily(
            "libra_coordinator_nodes", "Registered nodes by status.", labels=["status"]
        )
        for status in NodeStatus:
            count = sum(1 for v in views if v.status == status.value)
            nodes.add_metric([status.value], float(count))
        yield nodes
        yield GaugeMetricFamily(
            "libra_coordinator_reports_stored",
            "Reports stored (accepted, not duplicates).",
            value=float(sum(v.reports for v in views)),
        )
        last = [_aware(v.last_report_at) for v in views if v.last_report_at is not None]
        newest = GaugeMetricFamily(
            "libra_coordinator_last_report_age_seconds",
            "Seconds since the newest report from any node (absent before the first report).",
        )
        if last:
            newest.add_metric([], max(0.0, (now - max(last)).total_seconds()))
        yield newest
        active = [v for v in views if v.status == NodeStatus.ACTIVE.value]
        ages = [
            (now - _aware(v.last_report_at)).total_seconds()
            for v in active
            if v.last_report_at is not None
        ]
        lag = GaugeMetricFamily(
            "libra_coordinator_report_lag_seconds",
            "The largest 'seconds since its last report' among active nodes that reported.",
        )
        if ages:
            lag.add_metric([], max(0.0, max(ages)))
        yield lag
        yield GaugeMetricFamily(
            "libra_coordinator_active_nodes_without_reports",
            "Active nodes that have not reported yet.",
            value=float(sum(1 for v in active if v.last_report_at is None)),
        )


class CoordinatorMetrics:
    def __init__(self, engine: Engine | None = None, clock: Clock | None = None) -> None:
        self.registry = CollectorRegistry()
        self.ingested = Counter(
            "libra_coordinator_reports_ingested",
            "Envelopes posted to /v1/reports(/batch) by outcome: accepted, duplicate or the "
            "rejection code.",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "libra_coordinator_request_duration_seconds",
            "Request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if engine is not None:
            self.registry.register(_RegistryCollector(engine, clock or (lambda: datetime.now(UTC))))


class MetricsMiddleware:
    """Times every request; counts report outcomes from the (small) answers of the ingest
    routes."""

    def __init__(self, app: ASGIApp, metrics: CoordinatorMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()
        ingest = scope.get("method") == "POST" and scope.get("path") in REPORT_ROUTES

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and ingest:
                body.extend(message.get("body", b"")[: max(0, _MAX_BODY - len(body))])
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
            if ingest and route in REPORT_ROUTES:
                for outcome in ingest_outcomes(bytes(body)):
                    self.metrics.ingested.labels(outcome).inc()


def install(app: FastAPI, metrics: CoordinatorMetrics) -> None:
    """The middleware and the ``GET /metrics`` route."""
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(render(metrics.registry), media_type=CONTENT_TYPE_LATEST)
