"""The batch endpoint and per-node rate limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.errors import RateLimited
from coordinator.ratelimit import NodeRateLimiter
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import envelope_bytes, make_report, register, stored_counts


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(
        data_dir=tmp_path, max_batch_reports=10, rate_limit_per_node=0.001, rate_limit_burst=6
    )
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client


def _env(key: NodeKey, node: str, seq: int) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        envelope_bytes(make_report(key, node, sequence=seq, created_at=NOW), key)
    )
    return data


def test_batch_reports_each_outcome(
    client: TestClient, engine: Engine, key_a: NodeKey, key_b: NodeKey
) -> None:
    first = _env(key_a, "node-a", 1)
    tampered = {**_env(key_a, "node-a", 2), "payload": "AAAA"}
    batch = [first, first, tampered, _env(key_b, "node-b", 1), _env(key_a, "node-a", 3)]
    response = client.post("/v1/reports/batch", json={"envelopes": batch})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("status") or r["error"]["code"] for r in results] == [
        "accepted", "duplicate", "bad_signature", "accepted", "accepted",
    ]  # fmt: skip
    assert [r["http_status"] for r in results] == [200, 200, 401, 200, 200]
    assert stored_counts(engine) == (3, 3, 3)


def test_batch_limits(client: TestClient, key_a: NodeKey) -> None:
    too_many = [_env(key_a, "node-a", n) for n in range(1, 12)]
    response = client.post("/v1/reports/batch", json={"envelopes": too_many})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    json_type = {"content-type": "application/json"}
    # Issue 12: the batch body is read by the strict parser; a defect refuses the whole batch
    # (before: duplicate keys were read last-wins, and deep nesting answered 503).
    strict = (b'{"envelopes": [], "envelopes": [1]}', b"[" * 100_000, b'{"envelopes": [NaN]}')
    for body in (b"not json", b"[]", b'{"envelopes": []}', b'{"envelopes": 3}', *strict):
        bad = client.post("/v1/reports/batch", content=body, headers=json_type)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_rate_limit_per_node(
    client: TestClient, engine: Engine, key_a: NodeKey, key_b: NodeKey
) -> None:
    codes = []
    for seq in range(1, 9):
        response = client.post("/v1/reports", json=_env(key_a, "node-a", seq))
        codes.append(response.status_code)
        if response.status_code == 429:
            # rate 0.001/s: the next token is 1000 s away (Retry-After, whole seconds).
            assert 990 <= int(response.headers["retry-after"]) <= 1000
            assert response.json()["error"]["code"] == "rate_limited"
    assert codes == [200] * 6 + [429, 429]
    # Another node's budget is its own; a refused report was not stored.
    assert client.post("/v1/reports", json=_env(key_b, "node-b", 1)).status_code == 200
    assert stored_counts(engine)[0] == 7


def test_bucket_refills() -> None:
    now = [0.0]
    limiter = NodeRateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    limiter.check("n")
    limiter.check("n")
    with pytest.raises(RateLimited):
        limiter.check("n")
    now[0] = 0.5
    limiter.check("n")
    NodeRateLimiter(rate=0, burst=1).check("n")  # 0 disables


def test_batch_orders_within_itself(client: TestClient, engine: Engine, key_a: NodeKey) -> None:
    from .helpers import envelope_bytes as env_bytes

    report = make_report(key_a, "node-a", sequence=5, created_at=NOW)
    same_id_other_bytes = make_report(
        key_a, "node-a", sequence=6, created_at=NOW, report_id=report.report_id
    )
    batch = [
        json.loads(env_bytes(report, key_a)),
        _env(key_a, "node-a", 4),  # below 5, which this batch just accepted
        json.loads(env_bytes(same_id_other_bytes, key_a)),
        "not an envelope",
        _env(key_a, "node-a", 7),
    ]
    results = client.post("/v1/reports/batch", json={"envelopes": batch}).json()["results"]
    assert [r.get("status") or r["error"]["code"] for r in results] == [
        "accepted", "sequence_regression", "replayed_report", "malformed_envelope", "accepted",
    ]  # fmt: skip
    assert stored_counts(engine)[0] == 2


def test_batch_redone_one_by_one_when_a_sequence_moved(engine: Engine, key_a: NodeKey) -> None:
    from sqlalchemy import update

    from coordinator.db import new_session
    from coordinator.ingest import _advance_sequences, _Contended, ingest_batch
    from coordinator.models import NodeRow

    register(engine, "node-a", "DE", key_a, NOW)
    with new_session(engine) as session:
        with pytest.raises(_Contended):
            _advance_sequences(session, {"node-a": 3}, {"node-a": 9})  # it is NULL, not 3
        session.rollback()
        _advance_sequences(session, {"node-a": None}, {"node-a": 2})
        session.commit()
    with engine.begin() as conn:  # another writer moves the sequence meanwhile
        conn.execute(update(NodeRow).values(last_sequence=3))
    with new_session(engine) as session:
        bodies = [
            envelope_bytes(make_report(key_a, "node-a", sequence=n, created_at=NOW), key_a)
            for n in (3, 4)
        ]
        outcomes = ingest_batch(session, bodies, NOW)
    assert [getattr(o, "code", None) or getattr(o, "status", None) for o in outcomes] == [
        "sequence_regression", "accepted",
    ]  # fmt: skip


def test_contended_batch_gives_the_same_outcomes(
    engine: Engine, key_a: NodeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    import coordinator.ingest as ingest_module
    from coordinator.db import new_session

    register(engine, "node-a", "DE", key_a, NOW)

    def contended(*_args: object) -> None:
        raise ingest_module._Contended("node-a")

    monkeypatch.setattr(ingest_module, "_advance_sequences", contended)
    first = make_report(key_a, "node-a", sequence=1, created_at=NOW)
    bodies = [envelope_bytes(first, key_a), envelope_bytes(first, key_a)]
    bodies.append(envelope_bytes(make_report(key_a, "node-a", sequence=2, created_at=NOW), key_a))
    with new_session(engine) as session:
        outcomes = ingest_module.ingest_batch(session, bodies, NOW)
    assert [getattr(o, "status", None) for o in outcomes] == ["accepted", "duplicate", "accepted"]
    assert stored_counts(engine)[0] == 2
