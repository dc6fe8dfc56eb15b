"""Property: whatever arrives at POST /v1/reports, the answer is never a 5xx."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from protocol import REPORT_PAYLOAD_TYPE
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import envelope_bytes, make_report, register, sign_payload, stored_counts

FUZZ = settings(
    max_examples=int(os.environ.get("LIBRA_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

envelope_like = st.fixed_dictionaries(
    {
        "payloadType": st.sampled_from([REPORT_PAYLOAD_TYPE, "", "x"]) | st.text(max_size=30),
        "payload": st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
        | st.text(max_size=40),
        "signatures": st.lists(
            st.fixed_dictionaries({"keyid": st.text(max_size=70), "sig": st.text(max_size=100)}),
            max_size=3,
        )
        | json_values,
    }
)


@pytest.fixture
def client(engine: Engine, key_a: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    app = create_app(
        CoordinatorSettings(max_body_bytes=16 * 1024), engine=engine, clock=lambda: NOW
    )
    with TestClient(app) as test_client:
        yield test_client


def assert_not_5xx(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/reports", content=body)
    assert response.status_code < 500, response.text
    payload = response.json()
    if response.status_code != 200:
        assert set(payload["error"]) == {"code", "message"}


@FUZZ
@given(body=st.binary(max_size=2048))
def test_random_bytes(client: TestClient, engine: Engine, body: bytes) -> None:
    assert_not_5xx(client, body)
    assert stored_counts(engine) == (0, 0, 0)


@FUZZ
@given(value=json_values)
def test_random_json(client: TestClient, value: Any) -> None:
    assert_not_5xx(client, json.dumps(value).encode())


@FUZZ
@given(envelope=envelope_like)
def test_random_envelopes(client: TestClient, engine: Engine, envelope: dict[str, Any]) -> None:
    assert_not_5xx(client, json.dumps(envelope).encode())
    assert stored_counts(engine) == (0, 0, 0)


@FUZZ
@given(payload=json_values)
def test_validly_signed_random_payloads(client: TestClient, key_a: NodeKey, payload: Any) -> None:
    # Past the signature check: the payload parser must still answer with a 4xx, not crash.
    assert_not_5xx(client, sign_payload(json.dumps(payload).encode(), key_a))


@FUZZ
@given(
    mutation=st.dictionaries(
        st.sampled_from(
            ["sequence", "created_at", "period", "cells", "denominators", "report_id", "node_id"]
        ),
        json_values,
        min_size=1,
        max_size=3,
    )
)
def test_mutated_signed_reports(
    client: TestClient, key_a: NodeKey, mutation: dict[str, Any]
) -> None:
    data = json.loads(
        base64.b64decode(
            json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))["payload"]
        )
    )
    data.update(mutation)
    assert_not_5xx(client, sign_payload(json.dumps(data).encode(), key_a))


_SEQUENCE = [1000]


@FUZZ
@given(batch=st.lists(envelope_like | json_values, min_size=1, max_size=6))
def test_batch_endpoint_never_fails_with_5xx(
    client: TestClient, key_a: NodeKey, batch: list[Any]
) -> None:
    _SEQUENCE[0] += 1  # state persists across examples: each good report is a new one
    report = make_report(key_a, created_at=NOW, sequence=_SEQUENCE[0])
    good = json.loads(envelope_bytes(report, key_a))
    response = client.post("/v1/reports/batch", content=json.dumps({"envelopes": [*batch, good]}))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(batch) + 1))
    # Junk next to a good report never costs the good one.
    assert results[-1]["http_status"] == 200


@FUZZ
@given(
    path=st.sampled_from(["/v1/enroll", "/v1/invitations", "/v1/federation-key/sealed"]),
    body=json_values,
    token=st.text(max_size=60),
)
def test_membership_endpoints_never_fail_with_5xx(
    client: TestClient, path: str, body: Any, token: str
) -> None:
    headers = {"authorization": f"Bearer {token}"} if token.isascii() else {}
    response = client.post(path, content=json.dumps(body), headers=headers)
    assert response.status_code < 500, response.text
    assert set(response.json()) == {"error"}
