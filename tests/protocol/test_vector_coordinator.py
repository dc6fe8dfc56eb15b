"""The positive vectors, replayed byte for byte at our coordinator in the vectors' own setting
(the vector key registered for node-example, the clock at the vectors' "now"), get exactly the
answers the vector files state; and so do the negative cases' stored bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.registry import add_node
from protocol.testvector import (
    BATCH_PATH,
    KEY_ROTATION_PATH,
    NEGATIVE_DIR,
    VECTOR_COVERAGE_PATH,
    VECTOR_METHODS_PATH,
    VECTOR_NODE_ID,
    VECTOR_NOW,
    VECTOR_PATH,
    VECTOR_SKETCH_PATH,
    vector_key,
)
from protocol.testvector_video import VECTOR_VIDEO_PATH

JSON = {"content-type": "application/json"}


def _coordinator(data_dir: Path) -> Iterator[TestClient]:
    app = create_app(CoordinatorSettings(data_dir=data_dir), clock=lambda: VECTOR_NOW)
    with new_session(app.state.engine) as session:
        add_node(
            session,
            node_id=VECTOR_NODE_ID,
            country="DE",
            public_key_b64=vector_key().public_key_b64,
            now=VECTOR_NOW,
        )
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _coordinator(tmp_path)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # One coordinator for all negative cases: each case has its own report id and a rising
    # sequence, so even a wrongly accepted case would not change the next one's answer.
    yield from _coordinator(tmp_path_factory.mktemp("coordinator"))


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_batch_then_reports_get_the_stated_answers(client: TestClient) -> None:
    batch = _load(BATCH_PATH)
    response = client.post(
        "/v1/reports/batch", content=batch["request_canonical"].encode(), headers=JSON
    )
    assert (response.status_code, response.json()) == (
        batch["response"]["http_status"],
        batch["response"]["body"],
    )
    # report-v1 again, alone: the stated answer, but duplicate.
    report = _load(VECTOR_PATH)
    response = client.post("/v1/reports", content=report["envelope_canonical"], headers=JSON)
    assert response.json() == {**report["response"]["body"], "status": "duplicate"}
    sketch = _load(VECTOR_SKETCH_PATH)
    response = client.post("/v1/reports", content=sketch["envelope_canonical"], headers=JSON)
    assert (response.status_code, response.json()) == (200, sketch["response"]["body"])
    methods = _load(VECTOR_METHODS_PATH)
    response = client.post("/v1/reports", content=methods["envelope_canonical"], headers=JSON)
    assert (response.status_code, response.json()) == (200, methods["response"]["body"])
    coverage = _load(VECTOR_COVERAGE_PATH)
    response = client.post("/v1/reports", content=coverage["envelope_canonical"], headers=JSON)
    assert (response.status_code, response.json()) == (200, coverage["response"]["body"])
    video = _load(VECTOR_VIDEO_PATH)  # issue 13: video families, sequence 7
    response = client.post("/v1/reports", content=video["envelope_canonical"], headers=JSON)
    assert (response.status_code, response.json()) == (200, video["response"]["body"])


def test_rotation_gets_the_stated_answer(client: TestClient) -> None:
    rotation = _load(KEY_ROTATION_PATH)
    body = rotation["request_canonical"].encode()
    response = client.post("/v1/keys/rotate", content=body, headers=JSON)
    assert (response.status_code, response.json()) == (200, rotation["response"]["body"])
    again = client.post("/v1/keys/rotate", content=body, headers=JSON)
    assert again.json() == {**rotation["response"]["body"], "status": "unchanged"}


def _active_cases() -> list[dict[str, Any]]:
    cases = [c for path in sorted(NEGATIVE_DIR.glob("*.json")) for c in _load(path)["cases"]]
    return [c for c in cases if c["phase"] == "active"]


@pytest.mark.parametrize("case", _active_cases(), ids=lambda c: c["name"])
def test_stored_negative_bodies_get_their_codes(shared: TestClient, case: dict[str, Any]) -> None:
    response = shared.post(
        case["endpoint"],
        content=base64.b64decode(case["body_b64"]),
        headers={"content-type": case["content_type"]},
    )
    expected = case["expected"]
    assert response.status_code == expected["http_status"], response.text
    if "code" in expected:
        assert response.json()["error"]["code"] == expected["code"]
    else:
        got = [(r["http_status"], r["error"]["code"]) for r in response.json()["results"]]
        assert got == [(r["http_status"], r["code"]) for r in expected["results"]]
