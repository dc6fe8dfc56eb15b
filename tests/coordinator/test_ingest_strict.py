"""Issue 12: ingest is strict, and bad input is a specific 4xx that changes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from datasketches import HLL_4, hll_sketch
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.ingest import ingest, ingest_batch
from coordinator.models import NodeRow
from protocol.errors import ProtocolError
from protocol.keys import NodeKey
from protocol.models import ReportAck

from .conftest import NOW
from .helpers import (
    cell,
    envelope_bytes,
    kll_b64,
    make_report,
    payload_dict,
    register,
    removal,
    sign_payload,
    sketch_b64,
    stored_counts,
)

JSON = {"content-type": "application/json"}
MAX_SEQUENCE_STEP = 1_000_000  # docs/protocol.md §1, sequence_gap


@pytest.fixture
def registered(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    return engine


def run(engine: Engine, body: bytes) -> ReportAck:
    with new_session(engine) as session:
        return ingest(session, body, NOW)


def refused(engine: Engine, body: bytes) -> str:
    """The code ingest refuses ``body`` with; asserts nothing was stored."""
    before = stored_counts(engine)
    with pytest.raises(ProtocolError) as info:
        run(engine, body)
    assert stored_counts(engine) == before
    return info.value.code


def canonical(data: Any) -> bytes:
    import rfc8785

    return bytes(rfc8785.dumps(data))


# --------------------------------------------------------------------------- sequence gap


def test_first_report_may_not_jump_past_the_gap_limit(registered: Engine, key_a: NodeKey) -> None:
    too_far = make_report(key_a, sequence=MAX_SEQUENCE_STEP + 1, created_at=NOW)
    assert refused(registered, envelope_bytes(too_far, key_a)) == "sequence_gap"
    edge = make_report(key_a, sequence=MAX_SEQUENCE_STEP, created_at=NOW)
    assert run(registered, envelope_bytes(edge, key_a)).status == "accepted"


def test_max_sequence_cannot_exhaust_the_node(registered: Engine, key_a: NodeKey) -> None:
    run(registered, envelope_bytes(make_report(key_a, sequence=5, created_at=NOW), key_a))
    # Before issue 12 this was accepted, and the node could never report again.
    last = make_report(key_a, sequence=2**53 - 1, created_at=NOW)
    assert refused(registered, envelope_bytes(last, key_a)) == "sequence_gap"
    beyond = make_report(key_a, sequence=5 + MAX_SEQUENCE_STEP + 1, created_at=NOW)
    assert refused(registered, envelope_bytes(beyond, key_a)) == "sequence_gap"
    nxt = make_report(key_a, sequence=5 + MAX_SEQUENCE_STEP, created_at=NOW)
    assert run(registered, envelope_bytes(nxt, key_a)).status == "accepted"
    with new_session(registered) as session:
        node = session.get(NodeRow, "node-a")
        assert node is not None and node.last_sequence == 5 + MAX_SEQUENCE_STEP


def test_batch_applies_the_gap_rule_in_request_order(registered: Engine, key_a: NodeKey) -> None:
    bodies = [
        envelope_bytes(make_report(key_a, sequence=n, created_at=NOW), key_a)
        for n in (MAX_SEQUENCE_STEP + 1, 10, 10 + MAX_SEQUENCE_STEP + 1, 10 + MAX_SEQUENCE_STEP)
    ]
    with new_session(registered) as session:
        outcomes = ingest_batch(session, bodies, NOW)
    codes = [getattr(o, "code", None) or getattr(o, "status", None) for o in outcomes]
    assert codes == ["sequence_gap", "accepted", "sequence_gap", "accepted"]
    assert stored_counts(registered)[0] == 2


# --------------------------------------------------------------------------- sketches


def _with_cell_sketch(key: NodeKey, sketch: str, matches: int = 3, distinct: int = 2) -> bytes:
    data = payload_dict(make_report(key, created_at=NOW))
    data["cells"][0].update(sketch=sketch, matches=matches, distinct=distinct)
    return sign_payload(canonical(data), key)


def test_truncated_and_garbage_hll_sketches_are_malformed(
    registered: Engine, key_a: NodeKey
) -> None:
    dense = base64.b64decode(sketch_b64(f"url-{i}" for i in range(2000)))
    small = base64.b64decode(sketch_b64(["a", "b"]))
    cuts = [dense[:n] for n in (0, 7, 8, 39, 40, 41, len(dense) // 2, len(dense) - 1)]
    cuts += [small[:n] for n in range(len(small))]
    cuts += [b"\x00" * 64, dense + b"\x00", bytes(range(256))]
    for raw in cuts:
        code = refused(registered, _with_cell_sketch(key_a, base64.b64encode(raw).decode()))
        assert code == "malformed_payload", raw[:16]


def test_hll_of_another_shape_is_malformed(registered: Engine, key_a: NodeKey) -> None:
    for lg_k, kind in ((11, None), (12, HLL_4)):
        sketch = hll_sketch(lg_k, kind) if kind is not None else hll_sketch(lg_k)
        for item in ("a", "b"):
            sketch.update(item)
        text = base64.b64encode(sketch.serialize_compact()).decode()
        assert refused(registered, _with_cell_sketch(key_a, text)) == "malformed_payload"


def test_sketch_must_agree_with_distinct(registered: Engine, key_a: NodeKey) -> None:
    five = sketch_b64(f"url-{i}" for i in range(5))
    assert refused(registered, _with_cell_sketch(key_a, five, 10, 2)) == "sketch_mismatch"
    big = sketch_b64(f"url-{i}" for i in range(5000))
    assert refused(registered, _with_cell_sketch(key_a, big, 9000, 3000)) == "sketch_mismatch"
    assert refused(registered, _with_cell_sketch(key_a, big, 9000, 8000)) == "sketch_mismatch"
    assert run(registered, _with_cell_sketch(key_a, big, 9000, 5000)).status == "accepted"


def test_honest_sketches_are_never_refused() -> None:
    # The rule must not refuse an honest node: exact distinct counts of many sets of every size
    # (LIST, SET and dense HLL forms) all lie within the sketch's bounds. At 3 sigma about 1 in
    # 370 large honest cells would have been refused.
    from coordinator.sketch_check import check_cell_sketch

    for n in [1, 2, 7, 60, 300, 1000, *range(2000, 40_001, 1900)]:
        for seed in range(12):
            check_cell_sketch(sketch_b64(f"s{seed}-url-{i}" for i in range(n)), n)


def test_distinct_above_matches_is_malformed(registered: Engine, key_a: NodeKey) -> None:
    data = payload_dict(make_report(key_a, created_at=NOW))
    data["cells"][0].update(matches=1, distinct=2)
    assert refused(registered, sign_payload(canonical(data), key_a)) == "malformed_payload"


def test_truncated_kll_sketches_are_malformed(registered: Engine, key_a: NodeKey) -> None:
    # A 20-byte prefix of a KLL sketch crashed the coordinator process (segfault) before.
    row = removal([3600.0 * n for n in range(1, 400)])
    assert row.removal_sketch is not None
    raw = base64.b64decode(row.removal_sketch)
    for cut in sorted({0, 7, 8, 12, 19, 20, 21, 24, 28, len(raw) // 2, len(raw) - 1}):
        data = payload_dict(make_report(key_a, created_at=NOW, removals=[row]))
        data["removals"][0]["removal_sketch"] = base64.b64encode(raw[:cut]).decode()
        code = refused(registered, sign_payload(canonical(data), key_a))
        assert code == "malformed_payload", cut
    other_k = removal([5.0, 6.0])
    data = payload_dict(make_report(key_a, created_at=NOW, removals=[other_k]))
    from datasketches import kll_floats_sketch

    sketch = kll_floats_sketch(100)
    for value in (5.0, 6.0):
        sketch.update(value)
    data["removals"][0]["removal_sketch"] = base64.b64encode(sketch.serialize()).decode()
    assert refused(registered, sign_payload(canonical(data), key_a)) == "malformed_payload"
    good = make_report(key_a, created_at=NOW, removals=[row])
    assert run(registered, envelope_bytes(good, key_a)).status == "accepted"
    assert kll_b64([1.0])  # the helper the node-side tests use still builds k = 200


# --------------------------------------------------------------------------- strict JSON


def test_duplicate_cells_member_is_refused(registered: Engine, key_a: NodeKey) -> None:
    payload = make_report(key_a, created_at=NOW).to_payload()
    at = payload.index(b'"cells":')
    doubled = payload[:at] + b'"cells":[],' + payload[at:]
    assert refused(registered, sign_payload(doubled, key_a)) == "malformed_payload"


def test_deep_payload_and_body_are_4xx(registered: Engine, key_a: NodeKey) -> None:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert refused(registered, sign_payload(deep, key_a)) == "malformed_payload"
    assert refused(registered, b"[" * 100_000 + b"]" * 100_000) == "malformed_envelope"


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def client(registered: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = CoordinatorSettings(data_dir=tmp_path, rate_limit_per_node=0.01, rate_limit_burst=3)
    with TestClient(create_app(settings, engine=registered, clock=lambda: NOW)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
@pytest.mark.parametrize("path", ["/v1/reports", "/v1/reports/batch", "/v1/keys/rotate"])
def test_content_type_must_be_json(
    client: TestClient, engine: Engine, key_a: NodeKey, path: str, content_type: str | None
) -> None:
    envelope = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    body = b'{"envelopes":[' + envelope + b"]}" if path.endswith("batch") else envelope
    headers = {} if content_type is None else {"content-type": content_type}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert stored_counts(engine) == (0, 0, 0)


def test_json_with_charset_is_accepted(client: TestClient, key_a: NodeKey) -> None:
    body = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    headers = {"content-type": "Application/JSON; charset=UTF-8"}
    assert client.post("/v1/reports", content=body, headers=headers).status_code == 200


def test_batch_rate_limit_carries_retry_after(client: TestClient, key_a: NodeKey) -> None:
    batch = [
        json.loads(envelope_bytes(make_report(key_a, sequence=n, created_at=NOW), key_a))
        for n in range(1, 6)
    ]
    response = client.post("/v1/reports/batch", json={"envelopes": batch})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["http_status"] for r in results] == [200, 200, 200, 429, 429]
    waits = [r["retry_after"] for r in results[3:]]
    assert all(isinstance(w, int) and 1 <= w <= 100 for w in waits)  # rate 0.01/s
    assert response.headers["retry-after"] == str(max(waits))
    single = client.post(
        "/v1/reports",
        content=envelope_bytes(make_report(key_a, sequence=9, created_at=NOW), key_a),
        headers=JSON,
    )
    assert single.status_code == 429 and 1 <= int(single.headers["retry-after"]) <= 100


def test_period_bounds_over_http(client: TestClient, engine: Engine, key_a: NodeKey) -> None:
    # 30 days in the future, then a 10-year period (both accepted before issue 12).
    for start, days in ((NOW + timedelta(days=30), 1), (NOW - timedelta(days=3650), 3650)):
        report = make_report(key_a, created_at=NOW, period_start=start, period_days=days)
        response = client.post("/v1/reports", content=envelope_bytes(report, key_a), headers=JSON)
        assert (response.status_code, response.json()["error"]["code"]) == (422, "bad_period")
    assert stored_counts(engine) == (0, 0, 0)


def test_loose_types_over_http(client: TestClient, engine: Engine, key_a: NodeKey) -> None:
    for value in (True, "2"):
        data = payload_dict(make_report(key_a, created_at=NOW))
        data["cells"][0]["matches"] = value
        body = sign_payload(canonical(data), key_a)
        response = client.post("/v1/reports", content=body, headers=JSON)
        assert (response.status_code, response.json()["error"]["code"]) == (
            422,
            "malformed_payload",
        )
    assert stored_counts(engine) == (0, 0, 0)


def test_cells_with_sketches_from_the_helpers_are_accepted(
    registered: Engine, key_a: NodeKey
) -> None:
    # The positive control for the sketch checks above.
    report = make_report(
        key_a, created_at=NOW, cells=[cell(matches=4, distinct=2, sketch=sketch_b64(["x", "y"]))]
    )
    assert run(registered, envelope_bytes(report, key_a)).status == "accepted"


def test_rotation_body_is_read_strictly(client: TestClient, key_a: NodeKey) -> None:
    envelope = envelope_bytes(make_report(key_a, created_at=NOW), key_a)
    bodies = [
        # Two "proof" members: before issue 12 the last one won.
        b'{"announcement":' + envelope + b',"proof":{},"proof":' + envelope + b"}",
        b"[" * 30_000 + b"]" * 30_000,  # deep, under the 64 KiB limit
        b'{"announcement":' + envelope + b"}",
        b'{"announcement":' + envelope + b',"proof":' + envelope + b',"extra":1}',
        b'{"announcement":[],"proof":' + envelope + b"}",
    ]
    for body in bodies:
        response = client.post("/v1/keys/rotate", content=body, headers=JSON)
        assert response.status_code == 400, (body[:40], response.text)
        assert response.json()["error"]["code"] == "malformed_envelope"
