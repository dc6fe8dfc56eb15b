"""GET /metrics of the coordinator: ingest outcomes by code, node gauges and report lag."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.metrics import CoordinatorMetrics, ingest_outcomes
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import envelope_bytes, make_report, register

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
URLISH = re.compile(r"://|\.test|\d+\.\d+\.\d+\.\d+|[0-9a-f]{16,}|node-")
LATER = NOW + timedelta(minutes=30)
CLOCK = [NOW]  # the app's clock; a test moves it


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    CLOCK[0] = NOW
    with TestClient(create_app(CoordinatorSettings(), engine=engine, clock=lambda: CLOCK[0])) as c:
        yield c


def post(client: TestClient, path: str, body: bytes) -> int:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    return response.status_code


def test_ingest_outcomes_nodes_and_lag(client: TestClient, key_a: NodeKey, key_b: NodeKey) -> None:
    before = scrape(client)
    assert value(before, "libra_coordinator_nodes", status="active") == 2
    assert value(before, "libra_coordinator_active_nodes_without_reports") == 2
    assert ("libra_coordinator_report_lag_seconds", ()) not in before  # nothing reported yet

    report = make_report(key_a, created_at=NOW)
    body = envelope_bytes(report, key_a)
    assert post(client, "/v1/reports", body) == 200
    assert post(client, "/v1/reports", body) == 200  # duplicate
    forged = envelope_bytes(make_report(key_a, sequence=2, created_at=NOW), key_b)
    assert post(client, "/v1/reports", forged) >= 400
    batch = {
        "envelopes": [
            json.loads(envelope_bytes(make_report(key_b, "node-b", created_at=NOW), key_b)),
            json.loads(body),
            {"payloadType": "x"},
        ]
    }
    assert post(client, "/v1/reports/batch", json.dumps(batch).encode()) == 200
    CLOCK[0] = LATER
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("libra_coordinator_reports_ingested_total", outcome="accepted") == 2
    assert delta("libra_coordinator_reports_ingested_total", outcome="duplicate") == 2
    rejected = {
        dict(labels)["outcome"]: v
        for (name, labels), v in after.items()
        if name == "libra_coordinator_reports_ingested_total"
        and dict(labels)["outcome"] not in ("accepted", "duplicate")
    }
    assert sum(rejected.values()) == 2, rejected  # the forged one and the malformed one
    assert "other" not in rejected  # real error codes, e.g. bad_signature
    assert value(after, "libra_coordinator_reports_stored") == 2
    assert value(after, "libra_coordinator_active_nodes_without_reports") == 0
    # The scrape's clock is 30 minutes after the reports were received.
    assert value(after, "libra_coordinator_report_lag_seconds") == pytest.approx(1800, abs=5)
    assert value(after, "libra_coordinator_last_report_age_seconds") == pytest.approx(1800, abs=5)
    count = "libra_coordinator_request_duration_seconds_count"
    assert delta(count, route="/v1/reports", method="POST", status="200") == 2
    for (name, labels), _ in after.items():
        for label, text in labels:
            assert not URLISH.search(text), (name, label, text)


def test_outcome_parsing_is_bounded() -> None:
    assert ingest_outcomes(b'{"report_id": "r", "status": "accepted"}') == ["accepted"]
    assert ingest_outcomes(b'{"error": {"code": "bad_signature", "message": "m"}}') == [
        "bad_signature"
    ]
    batch = {"results": [{"status": "duplicate"}, {"error": {"code": "https://x.test/"}}, 5]}
    assert ingest_outcomes(json.dumps(batch).encode()) == ["duplicate", "other", "other"]
    assert ingest_outcomes(b"not json") == ["other"]
    assert CoordinatorMetrics().registry is not CoordinatorMetrics().registry
