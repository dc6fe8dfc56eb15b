"""One trace spans node -> function -> coordinator, and nothing sensitive is in it.

Real apps on real loopback HTTP: the function in lab mode fetches a generated (benign) image
from a header-recording server; the coordinator verifies a real signed report. All three
export to one in-memory exporter, each through its own scrubbing provider.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from coordinator import telemetry as coordinator_telemetry
from coordinator.app import create_app as create_coordinator
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema, new_session
from coordinator.db import make_engine as coordinator_engine
from coordinator.registry import add_node
from node import telemetry as node_telemetry
from node.db import make_engine as node_engine
from node.dispatch import FunctionClient
from node.federation import outbox
from node.federation.reporter import queue_report
from protocol.keys import NodeKey
from protocol.lab import LabNetwork
from protocol.models import HashResult, Period
from tests.function import helpers as h
from worker_function import telemetry as function_telemetry
from worker_function.app import create_app as create_function
from worker_function.settings import FunctionSettings

LAB_HOST = "img.trace.test"
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


class _Recorder(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_GET(self) -> None:
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = self.server.image
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[dict[str, str]]
    image: bytes


@pytest.fixture
def image_server() -> Iterator[_RecordingServer]:
    server = _RecordingServer(("127.0.0.1", 0), _Recorder)
    server.seen = []
    server.image = h.encode(h.generated_image(7), "PNG")
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _texts(span: ReadableSpan) -> list[str]:
    """Every string a span carries: its name, attributes, event attributes, status."""
    texts = [span.name, str(span.status.description or "")]
    for key, value in (span.attributes or {}).items():
        texts.append(f"{key}={value}")
    for event in span.events:
        texts.append(event.name)
        texts.extend(f"{k}={v}" for k, v in (event.attributes or {}).items())
    return texts


@pytest.fixture(params=[False, True], ids=["plain", "global-httpx-instrumentation"])
def global_httpx(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Also run with httpx instrumented process-wide (as ``opentelemetry-instrument`` does):
    the function must still fetch without trace headers."""
    instrumentor = HTTPXClientInstrumentor()
    if request.param:
        instrumentor.instrument()
    try:
        yield bool(request.param)
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


async def test_one_trace_spans_node_function_and_coordinator(
    tmp_path: Path, image_server: _RecordingServer, global_httpx: bool
) -> None:
    exporter = InMemorySpanExporter()
    port = image_server.server_address[1]
    lab = LabNetwork(hosts={LAB_HOST: "127.0.0.1"}, allow_ports=[port])
    function_app = create_function(
        FunctionSettings(require_auth=False, decode_isolation="thread", extra_ports=[]),
        lab=lab,
        tracer_provider=function_telemetry.build_provider(exporter, batch=False),
    )
    now = datetime.now(UTC)
    key = NodeKey.generate()
    c_engine = coordinator_engine(f"sqlite:///{tmp_path / 'coordinator.db'}")
    create_schema(c_engine)
    with new_session(c_engine) as session:
        add_node(
            session, node_id="node-de", country="DE", public_key_b64=key.public_key_b64, now=now
        )
        session.commit()
    coordinator_app = create_coordinator(
        CoordinatorSettings(data_dir=tmp_path / "coordinator"),
        engine=c_engine,
        tracer_provider=coordinator_telemetry.build_provider(exporter, batch=False),
    )
    n_engine = node_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}")
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    queued = queue_report(
        n_engine,
        node_id="node-de",
        key=key,
        federation_key=bytes(32),
        period=Period(start=start, end=start + timedelta(days=1)),
    )
    node_provider = node_telemetry.build_provider(exporter, batch=False)
    image_url = f"http://{LAB_HOST}:{port}/benign.png"

    with (
        h.FunctionServer(function_app) as function,
        h.FunctionServer(coordinator_app) as coordinator,
        node_telemetry.activate(node_provider),
        node_provider.get_tracer("test").start_as_current_span("libra.node.run") as root,
    ):
        async with FunctionClient(function.url, retries=0) as client:
            result = await client.analyze(image_url)
        flushed = await outbox.flush(n_engine, coordinator.url)

    assert isinstance(result, HashResult), result
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    assert flushed.delivered == [queued.report.report_id]
    spans = exporter.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}, "everything is one trace"
    services = {s.resource.attributes["service.name"] for s in spans}
    assert services == {"libra-node", "libra-function", "libra-coordinator"}

    by_id = {s.context.span_id: s for s in spans}

    def server_span(service: str) -> ReadableSpan:
        (span,) = [
            s
            for s in spans
            if s.kind == SpanKind.SERVER and s.resource.attributes["service.name"] == service
        ]
        return span

    # Each server span's parent is the node's client span (the traceparent travelled).
    for service, route in (("libra-function", "/v1/analyze"), ("libra-coordinator", "/v1/reports")):
        span = server_span(service)
        assert span.attributes is not None and span.attributes["http.route"] == route
        assert span.parent is not None
        parent = by_id[span.parent.span_id]
        assert parent.kind == SpanKind.CLIENT
        assert parent.resource.attributes["service.name"] == "libra-node"

    # The function fetched the image, without any trace header.
    assert image_server.seen, "the function fetched the image"
    for headers in image_server.seen:
        assert not set(TRACE_HEADERS) & set(headers), headers

    # No URL, host, address or hash value in any span.
    secrets = [LAB_HOST, "127.0.0.1", "://", queued.report.report_id, key.key_id]
    secrets += [v for v in result.hashes.model_dump().values() if isinstance(v, str) and v]
    hexlike = re.compile(r"[0-9a-f]{16,}")
    for span in spans:
        for text in _texts(span):
            assert not any(s in text for s in secrets), (span.name, text)
            assert not hexlike.search(text), (span.name, text)


def test_exporter_choice_by_settings() -> None:
    assert node_telemetry.configure("off", "http://127.0.0.1:4318/v1/traces") is None
    assert function_telemetry.provider_for("off", "") is None
    assert coordinator_telemetry.provider_for("off", "") is None
    console = None
    try:
        console = node_telemetry.configure("console", "")
        assert console is not None
        otlp = function_telemetry.provider_for("otlp", "http://127.0.0.1:4318/v1/traces")
        assert otlp is not None  # the exporter connects only when it exports
        otlp.shutdown()
    finally:
        node_telemetry.configure("off", "")
        if console is not None:
            console.shutdown()


def test_without_a_provider_node_clients_send_no_trace_headers(
    image_server: _RecordingServer,
) -> None:
    import httpx

    port = image_server.server_address[1]
    with node_telemetry.activate(None), httpx.Client(trust_env=False) as client:
        node_telemetry.instrument_client(client)
        with node_telemetry.span("libra.node.run"):
            client.get(f"http://127.0.0.1:{port}/x.png")
    assert image_server.seen and not set(TRACE_HEADERS) & set(image_server.seen[-1])
