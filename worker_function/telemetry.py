"""OpenTelemetry server spans of the function (FastAPI instrumentation).

The caller's W3C ``traceparent`` continues into the function's span. The function's own fetches
of image URLs (worker_function/fetch.py) are never instrumented: no trace header reaches a
suspect host. Exported spans keep an allowlist of attributes (protocol/telemetry.py): no URL,
host or hash value.
"""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from protocol import telemetry as policy
from protocol.telemetry import TracingMode

log = logging.getLogger("worker_function")

SERVICE_NAME = "libra-function"


def build_provider(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    return policy.build_provider(SERVICE_NAME, exporter, batch=batch)


def provider_for(mode: TracingMode, otlp_endpoint: str) -> TracerProvider | None:
    return policy.provider_for(SERVICE_NAME, mode, otlp_endpoint)


def untrace_fetches() -> bool:
    """Undo a process-wide httpx instrumentation (e.g. ``opentelemetry-instrument``): it would
    send traceparent with the function's fetches to suspect hosts. True if one was undone."""
    if "opentelemetry.instrumentation.httpx" not in sys.modules:
        return False  # nothing can have instrumented httpx
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()  # a singleton
    if not instrumentor.is_instrumented_by_opentelemetry:
        return False
    instrumentor.uninstrument()
    log.warning("process-wide httpx tracing was on: turned off (image fetches stay untraced)")
    return True


def instrument_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """Server spans for every request (none for /healthz and /metrics: probes are noise)."""
    untrace_fetches()
    if provider is None:
        return
    # Imported here: the instrumentation costs start-up time (Lambda cold starts) when unused.
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="/healthz,/metrics",
        exclude_spans=["receive", "send"],
    )
