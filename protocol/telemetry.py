"""What may leave any LIBRA component in a trace: the span export policy all three apply.

Traces cross from node to function to coordinator (W3C ``traceparent``) and end up at an
operator's collector, which is outside the trust boundary of the data. So every exported span
keeps an allowlist of attributes only (none can hold a URL, host, address, token or hash value),
and error descriptions, which may quote a URL, are dropped; the status code stays. The
components build their tracer providers here so that the rule exists once.

This module needs ``opentelemetry-sdk``; nothing else in ``protocol`` imports it.
"""

from __future__ import annotations

import sys
from typing import Literal

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Status

TracingMode = Literal["off", "console", "otlp"]

SAFE_ATTRIBUTES = frozenset(
    {
        "http.method",
        "http.request.method",
        "http.status_code",
        "http.response.status_code",
        "http.route",  # the route template (/v1/reports), never the concrete path
        "http.scheme",
        "url.scheme",
        "http.flavor",
        "network.protocol.version",
        "error.type",
        "exception.type",
    }
)


def safe_attributes(attributes: object) -> dict[str, object]:
    """The allowed attributes: SAFE_ATTRIBUTES and our own ``libra.*`` (which we set with care)."""
    items = dict(attributes or {})  # type: ignore[call-overload]
    return {k: v for k, v in items.items() if k in SAFE_ATTRIBUTES or k.startswith("libra.")}


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with safe attributes only and no status description."""
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=safe_attributes(span.attributes),  # type: ignore[arg-type]
        events=[
            Event(e.name, safe_attributes(e.attributes), e.timestamp)  # type: ignore[arg-type]
            for e in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingProcessor(SpanProcessor):
    """Hands the wrapped processor scrubbed copies of finished spans."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(scrubbed(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def build_provider(
    service_name: str, exporter: SpanExporter, *, batch: bool = True
) -> TracerProvider:
    """A provider whose every span passes the scrubber before ``exporter`` sees it."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    inner = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(ScrubbingProcessor(inner))
    return provider


def exporter_for(mode: TracingMode, otlp_endpoint: str) -> SpanExporter | None:
    """The exporter a component's ``tracing`` setting asks for (None: tracing off)."""
    if mode == "off":
        return None
    if mode == "otlp":
        # Imported here: the exporter costs start-up time (function cold starts) when unused.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=otlp_endpoint)
    return ConsoleSpanExporter(out=sys.stderr)  # stdout is the CLIs' own output


def provider_for(service_name: str, mode: TracingMode, otlp_endpoint: str) -> TracerProvider | None:
    exporter = exporter_for(mode, otlp_endpoint)
    return build_provider(service_name, exporter) if exporter is not None else None
