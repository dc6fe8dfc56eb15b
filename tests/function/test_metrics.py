"""GET /metrics of the function: outcomes counted after real analyses, safe labels only."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from worker_function.app import create_app
from worker_function.metrics import FunctionMetrics, error_code
from worker_function.settings import FunctionSettings

from .conftest import LAB_HOST

URLISH = re.compile(r"://|\.test|\d+\.\d+\.\d+\.\d+|[0-9a-f]{16,}|/.*\?")


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_outcomes_and_latency_after_real_work(lab_function: httpx.Client, base_url: str) -> None:
    before = scrape(lab_function)
    assert lab_function.post("/v1/analyze", json={"url": f"{base_url}/a.jpg"}).status_code == 200
    assert lab_function.post("/v1/analyze", json={"url": f"{base_url}/b.png"}).status_code == 200
    missing = lab_function.post("/v1/analyze", json={"url": f"{base_url}/nothing-here.jpg"})
    assert missing.status_code == 502 and missing.json()["error"]["code"] == "upstream_status"
    assert lab_function.post("/v1/analyze", content=b"{not json").status_code == 422
    after = scrape(lab_function)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("libra_function_analyses_total", outcome="ok") == 2
    assert delta("libra_function_analyses_total", outcome="upstream_status") == 1
    assert delta("libra_function_analyses_total", outcome="invalid_request") == 1
    assert (
        delta(
            "libra_function_request_duration_seconds_count",
            route="/v1/analyze",
            method="POST",
            status="200",
        )
        == 2
    )
    assert value(after, "libra_function_analyses_in_flight") == 0
    for (name, labels), _ in after.items():
        for label, text in labels:
            assert not URLISH.search(text), (name, label, text)
            assert LAB_HOST not in text


def test_unknown_paths_share_one_label(lab_function: httpx.Client) -> None:
    assert lab_function.get("/v1/analyze/http://evil.test/x.jpg").status_code == 404
    samples = scrape(lab_function)
    routes = {dict(labels).get("route") for (_, labels) in samples}
    assert "unmatched" in routes
    assert not any(r and "evil" in r for r in routes)


def test_metrics_can_be_turned_off() -> None:
    # Defaults per mode are in test_exposure.py; here the explicit setting wins both ways.
    off = create_app(FunctionSettings(require_auth=False, metrics=False))
    assert all(getattr(r, "path", "") != "/metrics" for r in off.routes)
    on = create_app(FunctionSettings(require_auth=False, metrics=True))
    assert any(getattr(r, "path", "") == "/metrics" for r in on.routes)


def test_error_code_label_is_bounded() -> None:
    assert error_code(b'{"error": {"code": "too_large", "message": "x"}}') == "too_large"
    assert error_code(b'{"error": {"code": "http://evil.test/a.jpg"}}') == "other"
    assert error_code(b"<html>") == "other"
    assert error_code(b'{"error": "flat"}') == "other"
    metrics = FunctionMetrics()
    assert metrics.registry is not FunctionMetrics().registry  # one registry per app
