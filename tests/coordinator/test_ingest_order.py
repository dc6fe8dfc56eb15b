"""The order of docs/protocol.md §1: for each adjacent pair of checks that one report can fail
together, the earlier check's code is the answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.errors import RateLimited
from coordinator.ingest import IngestPolicy, ingest
from coordinator.registry import add_node, revoke_key
from protocol.errors import ProtocolError
from protocol.keys import NodeKey
from protocol.models import Report

from .conftest import NOW
from .helpers import (
    envelope_bytes,
    fixed_key,
    make_report,
    payload_dict,
    register,
    sign_payload,
    sketch_b64,
    stored_counts,
)


def canonical(data: Any) -> bytes:
    return bytes(rfc8785.dumps(data))


def _always_limited(node_id: str) -> None:
    raise RateLimited(f"{node_id} is over its budget", retry_after=5)


LIMITED = IngestPolicy(rate_limit=_always_limited)


@pytest.fixture
def registered(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Engine:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW - timedelta(days=3))
    return engine


def code_of(engine: Engine, body: bytes, policy: IngestPolicy | None = None) -> str:
    before = stored_counts(engine)
    with new_session(engine) as session, pytest.raises(ProtocolError) as info:
        ingest(session, body, NOW, policy=policy)
    assert stored_counts(engine) == before
    return info.value.code


def _flip_sig(body: bytes) -> bytes:
    envelope = json.loads(body)
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return json.dumps(envelope).encode()


def _payload(key: NodeKey, **changes: object) -> dict[str, object]:
    data = payload_dict(make_report(key, created_at=NOW))
    data.update(changes)
    return data


def _rotated_b(engine: Engine, key_b: NodeKey, report: Report) -> bytes:
    """node-b gets a new key (key_b stays valid for reports created before NOW - 2 days);
    ``report`` signed with key_b."""
    with new_session(engine) as session:
        add_node(
            session, node_id="node-b", country="FR", public_key_b64=fixed_key(7).public_key_b64,
            now=NOW - timedelta(days=2, hours=1), overlap=timedelta(hours=1),
        )  # fmt: skip
    return envelope_bytes(report, key_b)


Case = Callable[[Engine, NodeKey, NodeKey], tuple[bytes, IngestPolicy | None]]


def _stale_report(key: NodeKey, node: str, created: datetime) -> Report:
    return make_report(key, node, created_at=created, period_start=created - timedelta(days=1))


CASES: dict[tuple[str, str], Case] = {
    ("malformed_envelope", "unknown_payload_type"): lambda e, a, b: (
        json.dumps(
            {**json.loads(envelope_bytes(make_report(a, created_at=NOW), a, "x/y")), "extra": 1}
        ).encode(),
        None,
    ),
    ("unknown_payload_type", "unknown_key"): lambda e, a, b: (
        envelope_bytes(make_report(fixed_key(9), created_at=NOW), fixed_key(9), "x/y"),
        None,
    ),
    ("unknown_key", "bad_signature"): lambda e, a, b: (
        _flip_sig(envelope_bytes(make_report(fixed_key(9), created_at=NOW), fixed_key(9))),
        None,
    ),
    ("bad_signature", "malformed_payload"): lambda e, a, b: (
        _flip_sig(sign_payload(b'{"a":1,"a":2}', a)),
        None,
    ),
    ("malformed_payload", "unsupported_version"): lambda e, a, b: (
        sign_payload(b'{"protocol_version":2,"protocol_version":2}', a),
        None,
    ),
    ("unsupported_version", "malformed_payload"): lambda e, a, b: (
        sign_payload(json.dumps(_payload(a, protocol_version=2), indent=1).encode(), a),
        None,
    ),
    ("malformed_payload", "bad_period"): lambda e, a, b: (
        sign_payload(
            canonical(
                _payload(
                    a,
                    sequence="1",
                    period={"start": "2026-11-24T00:00:00Z", "end": "2026-11-23T00:00:00Z"},
                )
            ),
            a,
        ),
        None,
    ),
    ("bad_period", "malformed_payload"): lambda e, a, b: (
        sign_payload(
            canonical(
                _payload(
                    a,
                    period={"start": "2026-11-24T00:00:00Z", "end": "2026-11-23T00:00:00Z"},
                    cells=[{**_payload(a)["cells"][0], "sketch": "AAAA"}],  # type: ignore[index]
                )
            ),
            a,
        ),
        None,
    ),
    ("sketch_mismatch", "key_mismatch"): lambda e, a, b: (
        sign_payload(
            canonical(
                _payload(
                    a,
                    key_id=b.key_id,
                    cells=[
                        {
                            **_payload(a)["cells"][0],  # type: ignore[index]
                            "matches": 50,
                            "distinct": 40,
                            "sketch": sketch_b64(["one", "two"]),
                        }
                    ],
                )
            ),
            a,
        ),
        None,
    ),
    ("key_mismatch", "unknown_node"): lambda e, a, b: (
        envelope_bytes(make_report(a, "nobody", created_at=NOW, key_id=b.key_id), a),
        None,
    ),
    ("unknown_node", "key_mismatch"): lambda e, a, b: (
        envelope_bytes(make_report(a, "nobody", created_at=NOW), a),
        None,
    ),
    ("key_mismatch", "expired_key"): lambda e, a, b: (
        _rotated_b(e, b, make_report(b, "node-a", created_at=NOW)),
        None,
    ),
    ("expired_key", "stale_timestamp"): lambda e, a, b: (
        _rotated_b(e, b, _stale_report(b, "node-b", NOW + timedelta(hours=1))),
        None,
    ),
    ("stale_timestamp", "rate_limited"): lambda e, a, b: (
        envelope_bytes(_stale_report(a, "node-a", NOW - timedelta(days=8)), a),
        LIMITED,
    ),
}


@pytest.mark.parametrize("pair", list(CASES), ids=["-then-".join(p) for p in CASES])
def test_adjacent_checks_run_in_the_documented_order(
    registered: Engine, key_a: NodeKey, key_b: NodeKey, pair: tuple[str, str]
) -> None:
    body, policy = CASES[pair](registered, key_a, key_b)
    assert code_of(registered, body, policy) == pair[0]


def test_revoked_key_comes_before_bad_signature(registered: Engine, key_b: NodeKey) -> None:
    with new_session(registered) as session:
        revoke_key(session, key_b.key_id, now=NOW - timedelta(hours=1), actor="test")
    body = _flip_sig(envelope_bytes(make_report(key_b, "node-b", created_at=NOW), key_b))
    assert code_of(registered, body) == "revoked_key"


def test_rate_limited_comes_before_duplicate_and_replay(registered: Engine, key_a: NodeKey) -> None:
    report = make_report(key_a, sequence=5, created_at=NOW)
    with new_session(registered) as session:
        ingest(session, envelope_bytes(report, key_a), NOW)
    assert code_of(registered, envelope_bytes(report, key_a), LIMITED) == "rate_limited"


def test_replayed_report_comes_before_sequence_regression(
    registered: Engine, key_a: NodeKey
) -> None:
    first = make_report(key_a, sequence=5, created_at=NOW)
    with new_session(registered) as session:
        ingest(session, envelope_bytes(first, key_a), NOW)
    same_id_lower = make_report(key_a, sequence=3, created_at=NOW, report_id=first.report_id)
    assert code_of(registered, envelope_bytes(same_id_lower, key_a)) == "replayed_report"


@pytest.fixture
def client(registered: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = CoordinatorSettings(data_dir=tmp_path, max_body_bytes=4096)
    with TestClient(create_app(settings, engine=registered, clock=lambda: NOW)) as test_client:
        yield test_client


def test_media_type_then_size_then_envelope(client: TestClient) -> None:
    big_garbage = b"x" * 5000
    answer = client.post("/v1/reports", content=big_garbage, headers={"content-type": "text/plain"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (415, "unsupported_media_type")
    json_type = {"content-type": "application/json"}
    answer = client.post("/v1/reports", content=big_garbage, headers=json_type)
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "too_large")
    answer = client.post("/v1/reports", content=b"x" * 100, headers=json_type)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "malformed_envelope")
