"""OpenTelemetry traces of the node's calls to the function and to the coordinator.

Only the node's own clients carry W3C ``traceparent``: the function client (node/dispatch.py),
the outbox and enrollment clients. The crawler's fetches of third-party sites are never
instrumented (there is no global httpx instrumentation), so no trace header reaches a suspect
host. Exported spans keep an allowlist of attributes only (protocol/telemetry.py): no URL, host
or hash value.

``configure`` (``libra node serve``) or ``activate`` (tests) choose the process's provider;
without one every helper here is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from protocol import telemetry as policy
from protocol.telemetry import TracingMode

SERVICE_NAME = "libra-node"

_active: TracerProvider | None = None


def build_provider(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    return policy.build_provider(SERVICE_NAME, exporter, batch=batch)


def configure(mode: TracingMode, otlp_endpoint: str) -> TracerProvider | None:
    """Make the provider for ``mode`` this process's (None: tracing off)."""
    global _active
    _active = policy.provider_for(SERVICE_NAME, mode, otlp_endpoint)
    return _active


@contextmanager
def activate(provider: TracerProvider | None) -> Iterator[None]:
    """Use ``provider`` inside the block, then restore the previous one (tests)."""
    global _active
    previous, _active = _active, provider
    try:
        yield
    finally:
        _active = previous


def instrument_client(client: httpx.Client | httpx.AsyncClient) -> None:
    """Trace this client's requests (W3C traceparent), if tracing is on. Only for clients of
    LIBRA services, never for clients that fetch third-party URLs."""
    if _active is not None:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_active)


@contextmanager
def span(name: str) -> Iterator[None]:
    """A span around one node operation (its client calls become its children)."""
    if _active is None:
        yield
        return
    with _active.get_tracer(__name__).start_as_current_span(name):
        yield
