"""OpenTelemetry server spans of the coordinator (FastAPI instrumentation).

A node's W3C ``traceparent`` (outbox flush, enrollment) continues into the coordinator's span.
Exported spans keep an allowlist of attributes (protocol/telemetry.py): no URL, host, token or hash.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from protocol import telemetry as policy
from protocol.telemetry import TracingMode

SERVICE_NAME = "libra-coordinator"


def build_provider(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    return policy.build_provider(SERVICE_NAME, exporter, batch=batch)


def provider_for(mode: TracingMode, otlp_endpoint: str) -> TracerProvider | None:
    return policy.provider_for(SERVICE_NAME, mode, otlp_endpoint)


def instrument_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """Server spans for every request (none for /healthz and /metrics: probes are noise)."""
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
