"""The HTTP API: status codes, the JSON error shape, body limits, registry and health."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

import coordinator.app as app_module
from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.registry import revoke_key
from protocol.canonical import canonical_json
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import (
    cell,
    envelope_bytes,
    fixed_key,
    make_report,
    make_token,
    payload_dict,
    register,
    sign_payload,
    stored_counts,
)

BODY_LIMIT = 64 * 1024


@pytest.fixture
def client(engine: Engine, key_a: NodeKey, key_b: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    settings = CoordinatorSettings(max_body_bytes=BODY_LIMIT)
    token = make_token(engine, "admin", NOW)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        test_client.headers["authorization"] = f"Bearer {token}"
        yield test_client


def post(client: TestClient, body: bytes) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/v1/reports", content=body, headers={"content-type": "application/json"}
    )
    return response.status_code, response.json()


def error_of(payload: dict[str, object]) -> str:
    assert set(payload) == {"error"}
    error = payload["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}
    assert isinstance(error["message"], str) and error["message"]
    return str(error["code"])


def test_accept_then_duplicate(client: TestClient, engine: Engine, key_a: NodeKey) -> None:
    report = make_report(key_a, created_at=NOW)
    body = envelope_bytes(report, key_a)
    assert post(client, body) == (200, {"report_id": report.report_id, "status": "accepted"})
    assert post(client, body) == (200, {"report_id": report.report_id, "status": "duplicate"})
    assert stored_counts(engine) == (1, 1, 1)


def _tampered(key: NodeKey) -> bytes:
    envelope = json.loads(envelope_bytes(make_report(key, created_at=NOW), key))
    envelope["payload"] = envelope["payload"][:-4] + "AAA="
    return json.dumps(envelope).encode()


def _versioned(key: NodeKey) -> bytes:
    data = payload_dict(make_report(key, created_at=NOW))
    data["protocol_version"] = 99
    return sign_payload(canonical_json(data), key)


# (name, body builder from (key_a, key_b), expected status, expected code)
REJECTIONS: list[tuple[str, Callable[[NodeKey, NodeKey], bytes], int, str]] = [
    ("tampered", lambda a, b: _tampered(a), 401, "bad_signature"),
    (
        "unregistered-key",
        lambda a, b: envelope_bytes(make_report(fixed_key(9), created_at=NOW), fixed_key(9)),
        401,
        "unknown_key",
    ),
    (
        "other-nodes-key",
        lambda a, b: envelope_bytes(make_report(b, node_id="node-a", created_at=NOW), b),
        403,
        "key_mismatch",
    ),
    (
        "unknown-node",
        lambda a, b: envelope_bytes(make_report(a, node_id="nobody", created_at=NOW), a),
        403,
        "unknown_node",
    ),
    (
        "stale",
        lambda a, b: envelope_bytes(
            make_report(
                a, created_at=NOW - timedelta(days=8), period_start=NOW - timedelta(days=9)
            ),
            a,
        ),
        400,
        "stale_timestamp",
    ),
    (
        "future",
        lambda a, b: envelope_bytes(make_report(a, created_at=NOW + timedelta(hours=1)), a),
        400,
        "stale_timestamp",
    ),
    (
        "payload-type",
        lambda a, b: envelope_bytes(make_report(a, created_at=NOW), a, payload_type="text/plain"),
        400,
        "unknown_payload_type",
    ),
    ("version", lambda a, b: _versioned(a), 400, "unsupported_version"),
    ("signed-garbage", lambda a, b: sign_payload(b"{oops", a), 422, "malformed_payload"),
    ("not-json", lambda a, b: b"hello, coordinator", 400, "malformed_envelope"),
    ("json-array", lambda a, b: b"[]", 400, "malformed_envelope"),
    ("empty", lambda a, b: b"", 400, "malformed_envelope"),
    (
        "extra-field",
        lambda a, b: json.dumps(
            {**json.loads(envelope_bytes(make_report(a, created_at=NOW), a)), "x": 1}
        ).encode(),
        400,
        "malformed_envelope",
    ),
]


@pytest.mark.parametrize(
    ("build", "status", "code"),
    [pytest.param(b, s, c, id=name) for name, b, s, c in REJECTIONS],
)
def test_rejections_map_to_status_and_code(
    client: TestClient,
    engine: Engine,
    key_a: NodeKey,
    key_b: NodeKey,
    build: Callable[[NodeKey, NodeKey], bytes],
    status: int,
    code: str,
) -> None:
    got_status, payload = post(client, build(key_a, key_b))
    assert (got_status, error_of(payload)) == (status, code)
    assert stored_counts(engine) == (0, 0, 0)


def test_revoked_key_is_403(client: TestClient, engine: Engine, key_a: NodeKey) -> None:
    with new_session(engine) as session:
        revoke_key(session, key_a.key_id, now=NOW - timedelta(seconds=1))
    status, payload = post(client, envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    assert (status, error_of(payload)) == (403, "revoked_key")


def test_replay_and_regression_are_409(client: TestClient, key_a: NodeKey) -> None:
    first = make_report(key_a, sequence=4, created_at=NOW)
    assert post(client, envelope_bytes(first, key_a))[0] == 200
    replay = make_report(key_a, sequence=5, created_at=NOW, report_id=first.report_id)
    status, payload = post(client, envelope_bytes(replay, key_a))
    assert (status, error_of(payload)) == (409, "replayed_report")
    regression = make_report(key_a, sequence=4, created_at=NOW)
    status, payload = post(client, envelope_bytes(regression, key_a))
    assert (status, error_of(payload)) == (409, "sequence_regression")


def test_oversized_body_is_413(client: TestClient, engine: Engine, key_a: NodeKey) -> None:
    status, payload = post(client, b"x" * (BODY_LIMIT + 1))
    assert (status, error_of(payload)) == (413, "too_large")
    # A real, validly signed report that is simply too big is refused the same way.
    cells = [cell(hoster=f"hoster {i:05d} " + "x" * 100) for i in range(600)]
    big = envelope_bytes(make_report(key_a, created_at=NOW, cells=cells), key_a)
    assert len(big) > BODY_LIMIT
    status, payload = post(client, big)
    assert (status, error_of(payload)) == (413, "too_large")
    assert stored_counts(engine) == (0, 0, 0)


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(BODY_LIMIT // 1024 + 2):
            yield b"y" * 1024

    response = client.post(
        "/v1/reports", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert (response.status_code, error_of(response.json())) == (413, "too_large")


def test_body_at_limit_is_read(client: TestClient) -> None:
    status, payload = post(client, b" " * BODY_LIMIT)
    assert (status, error_of(payload)) == (400, "malformed_envelope")


def test_picture_query_validation(client: TestClient) -> None:
    response = client.get("/v1/picture", params={"hash_family": "photodna"})
    assert (response.status_code, error_of(response.json())) == (422, "invalid_request")
    response = client.get("/v1/picture", params={"period_start": "yesterday"})
    assert (response.status_code, error_of(response.json())) == (422, "invalid_request")
    response = client.get(
        "/v1/picture",
        params={"period_start": "2026-11-24T00:00:00Z", "period_end": "2026-11-23T00:00:00Z"},
    )
    assert (response.status_code, error_of(response.json())) == (422, "invalid_request")


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    response = client.get("/v1/nope")
    assert (response.status_code, error_of(response.json())) == (404, "not_found")
    response = client.get("/v1/reports")
    assert (response.status_code, error_of(response.json())) == (405, "method_not_allowed")


def test_unexpected_error_is_503_without_details(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app_module, "build_picture", boom)
    response = client.get("/v1/picture")
    assert response.status_code == 503
    assert error_of(response.json()) == "unavailable"
    assert response.headers["retry-after"] == "30"
    assert "secret" not in response.text
    assert "secret internal detail" in caplog.text  # logged for the operator


def test_ingest_crash_is_503(
    client: TestClient, engine: Engine, key_a: NodeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database fell over")

    monkeypatch.setattr(app_module, "ingest", boom)
    status, payload = post(client, envelope_bytes(make_report(key_a, created_at=NOW), key_a))
    assert (status, error_of(payload)) == (503, "unavailable")


def test_nodes_registry(client: TestClient, key_a: NodeKey, key_b: NodeKey) -> None:
    assert post(client, envelope_bytes(make_report(key_a, created_at=NOW), key_a))[0] == 200
    response = client.get("/v1/nodes")
    assert response.status_code == 200
    nodes = {n["node_id"]: n for n in response.json()["nodes"]}
    assert set(nodes) == {"node-a", "node-b"}
    a = nodes["node-a"]
    assert a["country"] == "DE" and a["status"] == "active" and a["reports"] == 1
    assert a["last_report_at"] == "2026-11-24T12:00:00Z"
    assert [k["key_id"] for k in a["keys"]] == [key_a.key_id]
    assert a["keys"][0]["revoked_at"] is None
    assert nodes["node-b"]["last_report_at"] is None
    # Public registry: nothing but ids, countries, status and timestamps.
    assert "operator" not in a and "public_key" not in json.dumps(response.json())


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


# The helper's cell carries no `methods`: its 3 matches are "unspecified" (issue 18).
UNSPECIFIED_3 = {"direct": 0, "dihedral": 0, "trimmed": 0, "region": 0, "unspecified": 3}


def test_picture_over_http(client: TestClient, key_a: NodeKey) -> None:
    assert post(client, envelope_bytes(make_report(key_a, created_at=NOW), key_a))[0] == 200
    response = client.get("/v1/picture")
    assert response.status_code == 200
    body = response.json()
    assert body["generated_at"] == "2026-11-24T12:00:00Z"
    assert body["filters"] == {
        "period_start": None,
        "period_end": None,
        "hash_family": None,
        "country": None,
        "hoster": None,
        "asn": None,
        "media": None,  # issue 13
    }
    assert (body["reports"], body["nodes"]) == (1, 1)
    assert body["totals"] == {
        "matches": 3,
        "distinct": 2,
        "pages_fetched": 10,
        "images_hashed": 40,
        "hosts_seen": 3,
        "by_method": UNSPECIFIED_3,
        "by_media": {"image": 3, "video": 0},  # issue 13
        "prevalence": None,
        **SKETCHLESS_2,
    }
    assert body["by_country"] == [
        {
            "country": "DE", "matches": 3, "distinct": 2, "nodes": 1, "by_method": UNSPECIFIED_3,
            "pages_fetched": None, "images_hashed": None, "prevalence": None, **SKETCHLESS_2,
        }
    ]  # fmt: skip
    assert body["by_period"] == [
        {
            "period_start": "2026-11-23T00:00:00Z",
            "period_end": "2026-11-24T00:00:00Z",
            "matches": 3,
            "distinct": 2,
            **SKETCHLESS_2,
        }
    ]


# Issue 16: a cell without sketches is counted by its own `distinct`, never exactly.
SKETCHLESS_2 = {"distinct_exact": False, "distinct_lower": 2, "distinct_upper": 2}


def test_app_defaults_to_sqlite_in_data_dir(tmp_path: Path, key_a: NodeKey) -> None:
    settings = CoordinatorSettings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, clock=lambda: NOW)) as test_client:
        assert test_client.get("/healthz").status_code == 200
    assert (tmp_path / "data" / "coordinator.db").is_file()
