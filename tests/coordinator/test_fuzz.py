"""Property: whatever arrives at POST /v1/reports, the answer is never a 5xx, and whatever is
refused leaves every row count as it was."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from protocol import REPORT_PAYLOAD_TYPE
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import (
    envelope_bytes,
    make_report,
    register,
    sign_payload,
    sketch_b64,
    stored_counts,
)

FUZZ = settings(
    max_examples=int(os.environ.get("LIBRA_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
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


JSON = {"content-type": "application/json"}


def assert_not_5xx(client: TestClient, body: bytes, engine: Engine | None = None) -> int:
    """POST ``body``; never 5xx, and a refusal (with the coded shape) stores nothing."""
    before = stored_counts(engine) if engine is not None else None
    response = client.post("/v1/reports", content=body, headers=JSON)
    assert response.status_code < 500, response.text
    payload = response.json()
    if response.status_code != 200:
        assert set(payload["error"]) == {"code", "message"}
        if engine is not None:
            assert stored_counts(engine) == before
    return int(response.status_code)


# Odd JSON text: duplicate keys, deep nesting, NaN/Infinity, lone surrogates, big numbers.
odd_json = st.one_of(
    st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=20_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n),
    st.sampled_from(
        [b'{"a":1,"a":1}', b"[NaN]", b"[Infinity]", b"[1e999]", b'["\\ud800"]', b"[-0.0]"]
    ),
    st.integers(min_value=4000, max_value=6000).map(lambda n: b"[" + b"7" * n + b"]"),
)


@FUZZ
@given(body=st.binary(max_size=2048))
def test_random_bytes(client: TestClient, engine: Engine, body: bytes) -> None:
    assert_not_5xx(client, body)
    assert stored_counts(engine) == (0, 0, 0)


@FUZZ
@given(value=json_values)
def test_random_json(client: TestClient, engine: Engine, value: Any) -> None:
    assert_not_5xx(client, json.dumps(value).encode(), engine)


@FUZZ
@given(text=odd_json)
def test_odd_json_bodies_and_signed_payloads(
    client: TestClient, engine: Engine, key_a: NodeKey, text: bytes
) -> None:
    # As the body, and as a validly signed payload: both refused with a 4xx (issue 12:
    # deep nesting answered 503 RecursionError before).
    assert assert_not_5xx(client, text, engine) in (400, 413, 422)
    assert assert_not_5xx(client, sign_payload(text, key_a), engine) in (400, 413, 422)


@FUZZ
@given(envelope=envelope_like)
def test_random_envelopes(client: TestClient, engine: Engine, envelope: dict[str, Any]) -> None:
    assert_not_5xx(client, json.dumps(envelope).encode(), engine)
    assert stored_counts(engine) == (0, 0, 0)


@FUZZ
@given(payload=json_values)
def test_validly_signed_random_payloads(
    client: TestClient, engine: Engine, key_a: NodeKey, payload: Any
) -> None:
    # Past the signature check: the payload parser must still answer with a 4xx, not crash.
    assert_not_5xx(client, sign_payload(json.dumps(payload).encode(), key_a), engine)
    try:
        canonical = bytes(rfc8785.dumps(payload))
    except rfc8785.CanonicalizationError:
        return
    assert_not_5xx(client, sign_payload(canonical, key_a), engine)


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
    client: TestClient, engine: Engine, key_a: NodeKey, mutation: dict[str, Any]
) -> None:
    data = json.loads(
        base64.b64decode(
            json.loads(envelope_bytes(make_report(key_a, created_at=NOW), key_a))["payload"]
        )
    )
    data.update(mutation)
    assert_not_5xx(client, sign_payload(json.dumps(data).encode(), key_a), engine)
    try:  # canonical too, so the mutation reaches the schema and the checks after it
        canonical = bytes(rfc8785.dumps(data))
    except rfc8785.CanonicalizationError:
        return
    assert_not_5xx(client, sign_payload(canonical, key_a), engine)


_SKETCH_600 = sketch_b64(f"u{i}" for i in range(600))
_CELL_FIELDS = ["country", "asn", "hoster", "hash_family", "matches", "distinct", "sketch"]
odd_values = st.one_of(
    json_values,
    st.sampled_from([True, False, "2", 2**53, -1, 0, "ZZ", "", "x" * 300]),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
)


@FUZZ
@given(
    field=st.sampled_from(_CELL_FIELDS),
    value=odd_values,
    cut=st.integers(min_value=0, max_value=4200),
)
def test_mutated_cells_and_sketches(
    client: TestClient, engine: Engine, key_a: NodeKey, field: str, value: Any, cut: int
) -> None:
    # Valid signatures around canonical payloads whose cells (and sketches: truncated at any
    # byte) are wrong: always a 4xx, never a crash (issue 12: truncated HLL answered 503).
    good = _SKETCH_600
    data = json.loads(make_report(key_a, created_at=NOW).to_payload())
    data["cells"][0][field] = value
    data["cells"].append(dict(data["cells"][0], hoster="Other", sketch=None))
    truncated = base64.b64encode(base64.b64decode(good)[:cut]).decode()
    data["cells"][1].update(sketch=truncated, matches=700, distinct=600)
    try:
        canonical = bytes(rfc8785.dumps(data))
    except rfc8785.CanonicalizationError:
        return
    status = assert_not_5xx(client, sign_payload(canonical, key_a), engine)
    assert status != 200 or cut >= len(base64.b64decode(good))


_SEQUENCE = [1000]


@FUZZ
@given(batch=st.lists(envelope_like | json_values, min_size=1, max_size=6))
def test_batch_endpoint_never_fails_with_5xx(
    client: TestClient, engine: Engine, key_a: NodeKey, batch: list[Any]
) -> None:
    _SEQUENCE[0] += 1  # state persists across examples: each good report is a new one
    report = make_report(key_a, created_at=NOW, sequence=_SEQUENCE[0])
    good = json.loads(envelope_bytes(report, key_a))
    before = stored_counts(engine)
    response = client.post(
        "/v1/reports/batch", content=json.dumps({"envelopes": [*batch, good]}), headers=JSON
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(batch) + 1))
    # Junk next to a good report never costs the good one, and is all that was stored.
    assert results[-1]["http_status"] == 200
    accepted = sum(1 for r in results if r.get("status") == "accepted")
    assert stored_counts(engine)[0] == before[0] + accepted


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
    response = client.post(path, content=json.dumps(body), headers=headers | JSON)
    assert response.status_code < 500, response.text
    assert set(response.json()) == {"error"}
