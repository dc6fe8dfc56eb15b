"""The coordinator's transparency log over HTTP: leaves per accepted report and snapshot, signed
checkpoints, proofs that verify with protocol/tlog.py, and witness cosignatures."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.snapshot import load_or_create_key
from coordinator.tlog import log_origin, witness_name
from protocol.keys import NodeKey
from protocol.tlog import leaf_hash, verify_consistency, verify_inclusion
from protocol.tlog_leaf import payload_sha256, report_leaf
from protocol.tlog_note import cosign, parse_checkpoint, parse_note, verify_note

from .conftest import NOW
from .helpers import envelope_bytes, make_report, make_token, register


@pytest.fixture
def settings(tmp_path: Path) -> CoordinatorSettings:
    return CoordinatorSettings(signing_key_file=tmp_path / "coordinator.key")


@pytest.fixture
def client(
    engine: Engine, key_a: NodeKey, key_b: NodeKey, settings: CoordinatorSettings
) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    register(engine, "node-b", "FR", key_b, NOW)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client  # no API token: the log is public


def _send(client: TestClient, key: NodeKey, node_id: str, sequence: int) -> bytes:
    """Submit a report; returns its leaf hash as the node computes it."""
    report = make_report(key, node_id, sequence=sequence, created_at=NOW)
    body = envelope_bytes(report, key)
    response = client.post(
        "/v1/reports", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    digest = payload_sha256(report.to_payload())
    return leaf_hash(report_leaf(node_id, report.report_id, digest))


def _checkpoint(client: TestClient, settings: CoordinatorSettings) -> tuple[int, bytes, str]:
    response = client.get("/v1/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    key = load_or_create_key(settings.effective_signing_key_file)
    note = parse_note(response.text)
    verify_note(note, log_origin(key), key.verify_key)
    cp = parse_checkpoint(note.text)
    assert cp.origin == log_origin(key)
    return cp.size, cp.root, response.text


def _b64list(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def test_every_accepted_report_is_provably_in_the_log(
    client: TestClient, settings: CoordinatorSettings, key_a: NodeKey, key_b: NodeKey
) -> None:
    assert _checkpoint(client, settings)[0] == 0
    first = [_send(client, key_a, "node-a", 1), _send(client, key_b, "node-b", 1)]
    size1, root1, _ = _checkpoint(client, settings)
    assert size1 == 2
    later = [_send(client, key_a, "node-a", seq) for seq in (2, 3, 4)]
    size2, root2, _ = _checkpoint(client, settings)
    assert size2 == 5
    for index, leaf in enumerate(first + later):
        got = client.get(
            "/v1/log/proof/inclusion", params={"leaf_hash": leaf.hex(), "tree_size": 5}
        )
        assert got.status_code == 200, got.text
        assert got.json()["leaf_index"] == index
        verify_inclusion(leaf, index, 5, _b64list(got.json()["proof"]), root2)
    got = client.get("/v1/log/proof/consistency", params={"first": size1, "second": size2})
    assert got.status_code == 200
    verify_consistency(size1, size2, root1, root2, _b64list(got.json()["proof"]))


def test_a_resent_report_is_not_logged_twice(
    client: TestClient, settings: CoordinatorSettings, key_a: NodeKey
) -> None:
    report = make_report(key_a, created_at=NOW)
    body = envelope_bytes(report, key_a)
    for _ in range(2):
        client.post("/v1/reports", content=body, headers={"content-type": "application/json"})
    assert _checkpoint(client, settings)[0] == 1


def test_signed_snapshots_are_logged(
    client: TestClient, engine: Engine, settings: CoordinatorSettings
) -> None:
    token = make_token(engine, "viewer", NOW)
    response = client.get("/v1/picture/snapshot", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200
    payload = base64.b64decode(response.json()["payload"])
    leaf = leaf_hash(f'{{"kind":"snapshot","payload_sha256":"{payload_sha256(payload)}"}}'.encode())
    assert response.headers["libra-log-leaf-hash"] == leaf.hex()
    size, root, _ = _checkpoint(client, settings)
    got = client.get("/v1/log/proof/inclusion", params={"leaf_hash": leaf.hex(), "tree_size": size})
    verify_inclusion(leaf, got.json()["leaf_index"], size, _b64list(got.json()["proof"]), root)


def test_witness_cosignature_is_verified_stored_and_served(
    client: TestClient, settings: CoordinatorSettings, key_a: NodeKey, key_b: NodeKey
) -> None:
    _send(client, key_a, "node-a", 1)
    size, _, text = _checkpoint(client, settings)
    note = parse_note(text)
    cosigned = note.with_signature(
        cosign(note.text, witness_name("node-a"), key_a.signing_key, int(NOW.timestamp()))
    )
    headers = {"content-type": "text/plain; charset=utf-8"}
    ok = client.post("/v1/log/cosignatures", content=cosigned.render(), headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"tree_size": size, "node_id": "node-a"}
    served = parse_note(_checkpoint(client, settings)[2])
    assert [s.name for s in served.signatures][1:] == [witness_name("node-a")]
    future = note.with_signature(
        cosign(note.text, witness_name("node-a"), key_a.signing_key, int(NOW.timestamp()) + 3600)
    )
    early = client.post("/v1/log/cosignatures", content=future.render(), headers=headers)
    assert early.status_code == 422
    assert "future" in early.json()["error"]["message"]
    # node-b's key cannot cosign in node-a's name.
    forged = note.with_signature(cosign(note.text, witness_name("node-a"), key_b.signing_key, 1))
    bad = client.post("/v1/log/cosignatures", content=forged.render(), headers=headers)
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "bad_signature"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (
            "/v1/log/proof/inclusion",
            {"leaf_hash": "AB" * 32, "tree_size": 1},
            422,
            "invalid_request",
        ),
        (
            "/v1/log/proof/inclusion",
            {"leaf_hash": "ab" * 32, "tree_size": 1},
            422,
            "invalid_request",
        ),
        ("/v1/log/proof/inclusion", {"leaf_hash": "ab" * 32, "tree_size": 0}, 422, None),
        ("/v1/log/proof/inclusion", {"leaf_hash": "ab" * 32, "tree_size": "x"}, 422, None),
        ("/v1/log/proof/consistency", {"first": 2, "second": 1}, 422, "invalid_request"),
        ("/v1/log/proof/consistency", {"first": 0, "second": 99}, 422, "invalid_request"),
        ("/v1/log/proof/consistency", {"first": -1, "second": 0}, 422, None),
    ],
)
def test_bad_proof_requests_get_clear_errors(
    client: TestClient, path: str, params: dict[str, object], status: int, code: str | None
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["error"]["code"] == code


def test_unknown_leaf_is_404(
    client: TestClient, key_a: NodeKey, settings: CoordinatorSettings
) -> None:
    _send(client, key_a, "node-a", 1)
    _checkpoint(client, settings)
    response = client.get(
        "/v1/log/proof/inclusion", params={"leaf_hash": "ab" * 32, "tree_size": 1}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("not a note", "text/plain", 422),
        ("x\nabc\nAAAA\n\n\u2014 libra.node/node-a AAAAAAAA\n", "text/plain", 422),
        ("{}", "application/json", 415),
        (
            "libra.coordinator/x\n99\n" + "A" * 43 + "=\n\n\u2014 libra.node/node-a AAAAAAAA\n",
            "text/plain",
            404,
        ),
    ],
)
def test_bad_cosignature_posts_are_refused(
    client: TestClient, body: str, content_type: str, status: int
) -> None:
    response = client.post(
        "/v1/log/cosignatures", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}


def test_log_endpoints_are_in_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/log/checkpoint",
        "/v1/log/proof/inclusion",
        "/v1/log/proof/consistency",
        "/v1/log/cosignatures",
    ):
        assert path in paths


def test_snapshot_verify_checks_log_inclusion_offline(
    client: TestClient, engine: Engine, settings: CoordinatorSettings, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from coordinator.cli import app as cli_app

    token = make_token(engine, "viewer", NOW)
    snap = client.get("/v1/picture/snapshot", headers={"authorization": f"Bearer {token}"})
    leaf = snap.headers["libra-log-leaf-hash"]
    size, _, note = _checkpoint(client, settings)
    proof = client.get("/v1/log/proof/inclusion", params={"leaf_hash": leaf, "tree_size": size})
    files = {
        "snap": snap.content,
        "cp": note.encode(),
        "proof": proof.content,
        "key": load_or_create_key(settings.effective_signing_key_file).public_key_b64.encode(),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    args = ["snapshot", "verify", str(tmp_path / "snap"), "--public-key", f"@{tmp_path / 'key'}"]
    log_args = ["--checkpoint", str(tmp_path / "cp"), "--inclusion-proof", str(tmp_path / "proof")]
    ok = CliRunner().invoke(cli_app, [*args, *log_args])
    assert ok.exit_code == 0, ok.output
    assert f"leaf 0 of the signed checkpoint of size {size}" in ok.output
    # Another snapshot's proof (a different leaf) does not prove this one.
    bad = proof.json() | {"proof": ["A" * 43 + "="]}
    (tmp_path / "proof").write_text(json.dumps(bad))
    refused = CliRunner().invoke(cli_app, [*args, *log_args])
    assert refused.exit_code == 1
    assert "NOT proven in the log" in refused.output
    half = CliRunner().invoke(cli_app, [*args, "--checkpoint", str(tmp_path / "cp")])
    assert half.exit_code == 2


def test_batch_ingest_logs_each_accepted_report_once(
    client: TestClient, settings: CoordinatorSettings, key_a: NodeKey
) -> None:
    reports = [make_report(key_a, sequence=seq, created_at=NOW) for seq in (1, 2, 3)]
    envelopes = [json.loads(envelope_bytes(r, key_a)) for r in reports]
    body = json.dumps({"envelopes": [*envelopes, envelopes[0]]})  # the first one twice
    response = client.post(
        "/v1/reports/batch", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    size, root, _ = _checkpoint(client, settings)
    assert size == 3
    for report in reports:
        leaf = leaf_hash(
            report_leaf("node-a", report.report_id, payload_sha256(report.to_payload()))
        )
        got = client.get(
            "/v1/log/proof/inclusion", params={"leaf_hash": leaf.hex(), "tree_size": size}
        ).json()
        verify_inclusion(leaf, got["leaf_index"], size, _b64list(got["proof"]), root)
