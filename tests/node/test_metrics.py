"""The node's Prometheus metrics, scraped over loopback after real work."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session

from node import metrics as node_metrics
from node.config import NodeSettings
from node.crawl.frontier import FrontierItem
from node.crawl.frontier.sqlite import SqliteFrontier
from node.dispatch import FunctionClient
from node.federation import outbox
from node.federation.reporter import queue_report
from node.metrics import NodeMetrics, asn_bucket, code_label, country_label, parse_listen
from node.models import AnalysisFailure
from protocol.keys import NodeKey
from protocol.models import Period
from tests.node.conftest import hash_result, image_hashes
from tests.node.fake_coordinator import CoordinatorState, RunningApp, RunningCoordinator, free_port
from tests.node.test_reporter import add_cycle

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
URLISH = re.compile(r"://|\.test|\d+\.\d+\.\d+\.\d+|[0-9a-f]{16,}|Hoster")
NOW = datetime.now(UTC)


def function_app() -> FastAPI:
    """Answers ok.png with a result and anything else with the function's 502 error."""
    app = FastAPI()
    result = hash_result("x", image_hashes(random.Random(3)))

    @app.post("/v1/analyze")
    async def analyze(request: Request) -> Any:
        url = (await request.json())["url"]
        if url.endswith("ok.png"):
            return result.model_copy(update={"url": url, "final_url": url}).model_dump(mode="json")
        error = {"code": "upstream_status", "message": f"{url} answered 404"}
        return JSONResponse({"error": error}, 502)

    return app


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=120, trust_env=False)  # generous: a loaded CI machine
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def frontier_with_queue(path: Path, queued: int) -> None:
    frontier = SqliteFrontier(path)
    seeds = [
        FrontierItem(url=f"http://s{n}.test/", depth=0, site=f"s{n}.test") for n in range(queued)
    ]
    for seed in frontier.start("run-1", seeds):  # the crawler add()s the seeds
        assert frontier.add(seed.url, seed)
    frontier.close()


async def test_counters_and_gauges_move_after_real_work(tmp_path: Path, engine: Engine) -> None:
    add_cycle(
        engine,
        NOW - timedelta(hours=1),
        [
            ("http://a.test/1.png", "DE", 64500, "Hoster A", "md5"),
            ("http://a.test/2.png", "DE", 64999, "Hoster A", "md5"),
            ("http://b.test/3.png", "NL", 13335, "Hoster B", "pdq"),
            ("http://c.test/4.png", "ZZ", 0, "unknown", "md5"),
        ],
        pages={"a.test": 4, "b.test": 2},
        images=7,
    )
    with Session(engine) as session, session.begin():
        for code in ("upstream_status", "upstream_status", "Not A Code: http://x.test/"):
            session.add(AnalysisFailure(cycle_id=1, url="http://a.test/f.png", code=code))
    key = NodeKey.generate()
    period = Period(start=NOW - timedelta(days=1), end=NOW)
    queued = queue_report(
        engine, node_id="node-a", key=key, federation_key=bytes(32), period=period
    )
    frontier_db = tmp_path / "frontier.sqlite3"
    frontier_with_queue(frontier_db, 3)
    clock = [datetime.now(UTC) + timedelta(minutes=10)]
    metrics = NodeMetrics(engine, frontier_db=frontier_db, clock=lambda: clock[0])
    server, thread = node_metrics.serve(metrics, f"127.0.0.1:{free_port()}")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        first = scrape(url)
        assert value(first, "libra_node_pages_total", outcome="fetched") == 6
        assert value(first, "libra_node_images_total", outcome="hashed") == 7
        assert value(first, "libra_node_crawl_cycles_total", status="done") == 1
        matches = "libra_node_matches_total"
        assert value(first, matches, country="DE", asn_bucket="AS64000", hash_family="md5") == 2
        assert value(first, matches, country="NL", asn_bucket="AS13000", hash_family="pdq") == 1
        assert value(first, matches, country="ZZ", asn_bucket="unknown", hash_family="md5") == 1
        failures = "libra_node_analysis_failures_total"
        assert value(first, failures, code="upstream_status") == 2
        assert value(first, failures, code="other") == 1
        assert value(first, "libra_node_outbox_reports", state="queued") == 1
        assert value(first, "libra_node_report_lag_seconds") == pytest.approx(600, abs=30)
        assert value(first, "libra_node_frontier_queued") == 3

        function_port, coordinator_port = free_port(), free_port()
        state = CoordinatorState(keys={key.key_id: key.verify_key})
        with (
            node_metrics.activate(metrics),
            RunningApp(function_app(), function_port) as function,
            RunningCoordinator(state, coordinator_port) as coordinator,
        ):
            async with FunctionClient(function.url, retries=0) as client:
                await client.analyze("http://a.test/ok.png")
                await client.analyze("http://a.test/gone.png")
            flushed = await outbox.flush(engine, coordinator.url)
        assert flushed.delivered == [queued.report.report_id]
        # Not active any more: nothing is counted outside the block.
        async with FunctionClient(f"http://127.0.0.1:{free_port()}", retries=0) as client:
            await client.analyze("http://a.test/ok.png")

        second = scrape(url)
        calls = "libra_node_function_calls_total"
        assert value(second, calls, outcome="ok") == 1
        assert value(second, calls, outcome="upstream_status") == 1
        assert value(second, calls, outcome="function_unreachable") == 0
        assert value(second, "libra_node_function_call_seconds_count") == 2
        assert value(second, "libra_node_report_deliveries_total", outcome="accepted") == 1
        assert value(second, "libra_node_last_report_acknowledged_timestamp_seconds") > 0
        assert value(second, "libra_node_outbox_reports", state="queued") == 0
        assert value(second, "libra_node_report_lag_seconds") == 0
        for samples in (first, second):
            for (name, labels), _ in samples.items():
                for label, text in labels:
                    assert not URLISH.search(text), (name, label, text)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_labels_and_listen_addresses() -> None:
    assert asn_bucket(0) == "unknown" and asn_bucket(-1) == "unknown"
    assert asn_bucket(64500) == "AS64000" and asn_bucket(4200000123) == "AS4200000000"
    assert country_label("DE") == "DE" and country_label("??") == "ZZ"
    assert code_label("too_large") == "too_large"
    assert code_label("http://evil.test/x") == "other" and code_label("A b") == "other"
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", ":9464", "h:99999", "h:x"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert NodeMetrics().registry is not NodeMetrics().registry


def test_settings_validate_metrics_listen() -> None:
    base = {"node_id": "node-a", "country": "DE"}
    settings = NodeSettings(**base, telemetry={"metrics_listen": "127.0.0.1:9464"})  # type: ignore[arg-type]
    assert settings.telemetry.metrics_listen == "127.0.0.1:9464"
    assert NodeSettings(**base).telemetry.metrics_listen is None  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NodeSettings(**base, telemetry={"metrics_listen": "http://x.test:1/"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NodeSettings(**base, telemetry={"tracing": "jaeger"})  # type: ignore[arg-type]


def test_serve_starts_the_configured_metrics_server(tmp_path: Path, engine: Engine) -> None:
    port = free_port()
    settings = NodeSettings(
        node_id="node-a",
        country="DE",
        data_dir=tmp_path,
        telemetry={"metrics_listen": f"127.0.0.1:{port}"},  # type: ignore[arg-type]
    )
    metrics = node_metrics.start(settings, engine)
    try:
        node_metrics.observe_analysis("ok", 0.1)  # the started metrics are the active ones
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(samples, "libra_node_function_calls_total", outcome="ok") == 1
        assert value(samples, "libra_node_frontier_queued") == 0
    finally:
        node_metrics.set_active(None)
        metrics.server.shutdown()
        metrics.server.server_close()
    unconfigured = NodeSettings(node_id="node-a", country="DE", data_dir=tmp_path)
    try:
        assert node_metrics.start(unconfigured, engine).server is None
    finally:
        node_metrics.set_active(None)
