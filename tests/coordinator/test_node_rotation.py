"""Node-initiated signing-key rotation, end to end in process (node client -> coordinator app)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.models import AuditRow, NodeKeyRow
from coordinator.registry import revoke_node
from node.keys.files import create_signing_key, load_signing_key
from node.keys.signing_rotation import (
    RotationError,
    pending_key_path,
    rotate_signing_key,
    rotation_request,
)
from protocol.dsse import sign
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import envelope_bytes, fixed_key, make_report, register

URL = "http://coordinator.test"
OVERLAP = timedelta(hours=24)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> Iterator[tuple[TestClient, Clock, Path]]:
    clock = Clock()
    key_path = tmp_path / "node" / "signing.key"
    key = create_signing_key(key_path)
    register(engine, "node-a", "DE", key, NOW - timedelta(days=1))
    register(engine, "node-b", "FR", fixed_key(9), NOW - timedelta(days=1))
    settings = CoordinatorSettings(data_dir=tmp_path, key_overlap=OVERLAP)
    with TestClient(create_app(settings, engine=engine, clock=clock)) as client:
        yield client, clock, key_path


def _transport(client: TestClient) -> httpx.BaseTransport:
    return client._transport


def _submit(
    client: TestClient, key: NodeKey, sequence: int, created_at: datetime = NOW
) -> httpx.Response:
    report = make_report(key, "node-a", sequence=sequence, created_at=created_at)
    return client.post(
        "/v1/reports",
        content=envelope_bytes(report, key),
        headers={"content-type": "application/json"},
    )


def test_rotation_end_to_end(world: tuple[TestClient, Clock, Path], engine: Engine) -> None:
    client, clock, key_path = world
    old = load_signing_key(key_path)
    result = rotate_signing_key(URL, key_path, "node-a", now=NOW, transport=_transport(client))
    new = load_signing_key(key_path)
    assert result.status == "rotated" and result.new_key_id == new.key_id != old.key_id
    assert not pending_key_path(key_path).exists()
    assert load_signing_key(result.retired_key_file).key_id == old.key_id
    assert oct(result.retired_key_file.stat().st_mode & 0o777) == "0o600"
    assert result.old_valid_until is not None

    # The new key signs from now on; the old one still verifies reports made in the window
    # (a node's outbox may hold some), and nothing created after it closed.
    assert _submit(client, new, 1).status_code == 200
    clock.now = NOW + timedelta(hours=1)
    assert _submit(client, old, 2, created_at=clock.now).status_code == 200
    clock.now = NOW + OVERLAP + timedelta(hours=1)
    late = _submit(client, old, 3, created_at=clock.now)
    assert late.status_code == 403 and late.json()["error"]["code"] == "expired_key"
    assert _submit(client, new, 4, created_at=clock.now).status_code == 200

    with Session(engine) as session:
        entry = session.exec(select(AuditRow).where(AuditRow.action == "key.rotate")).one()
        assert entry.actor == "node:node-a" and new.key_id in entry.details
        keys = {k.key_id: k for k in session.exec(select(NodeKeyRow))}
    assert keys[old.key_id].valid_until == NOW + OVERLAP
    assert keys[new.key_id].valid_until is None

    # Rotating again after the window: the old key can no longer ask for anything.
    body = rotation_request("node-a", old, NodeKey.generate(), clock.now)
    again = client.post("/v1/keys/rotate", json=body)
    assert again.status_code == 403 and again.json()["error"]["code"] == "expired_key"


def test_retry_after_a_lost_answer_is_unchanged(world: tuple[TestClient, Clock, Path]) -> None:
    client, _, key_path = world
    current, new = load_signing_key(key_path), NodeKey.generate()
    body = rotation_request("node-a", current, new, NOW, timedelta(hours=2))
    first = client.post("/v1/keys/rotate", json=body).json()
    assert first["status"] == "rotated" and first["key_id"] == new.key_id
    assert first["previous_valid_until"].startswith("2026-11-24T14:00:00")  # shorter wish
    second = client.post("/v1/keys/rotate", json=body)
    assert second.status_code == 200 and second.json()["status"] == "unchanged"


def test_node_keeps_the_pending_key_when_refused(world: tuple[TestClient, Clock, Path]) -> None:
    client, clock, key_path = world
    clock.now = NOW + timedelta(hours=1)  # the node's clock is an hour behind: stale
    old = load_signing_key(key_path)
    with pytest.raises(RotationError, match="stale_timestamp"):
        rotate_signing_key(
            URL, key_path, "node-a", now=NOW - timedelta(minutes=30), transport=_transport(client)
        )
    pending = load_signing_key(pending_key_path(key_path))
    assert load_signing_key(key_path).key_id == old.key_id  # nothing switched
    # A retry reuses the pending key rather than making (and registering) another.
    result = rotate_signing_key(
        URL, key_path, "node-a", now=clock.now, transport=_transport(client)
    )
    assert result.new_key_id == pending.key_id


def _post(client: TestClient, announcement: object, proof: object) -> httpx.Response:
    return client.post("/v1/keys/rotate", json={"announcement": announcement, "proof": proof})


def test_refusals(world: tuple[TestClient, Clock, Path], engine: Engine) -> None:
    client, _, key_path = world
    current, new, other = load_signing_key(key_path), NodeKey.generate(), NodeKey.generate()
    body = rotation_request("node-a", current, new, NOW)
    payload_type = body["announcement"]["payloadType"]  # type: ignore[index]

    def code(response: httpx.Response) -> str:
        return str(response.json()["error"]["code"])

    # Proof of possession: signed by some other key, or over a different payload.
    wrong_signer = sign(b"x", payload_type, other).to_json()
    assert code(_post(client, body["announcement"], wrong_signer)) == "key_mismatch"
    twin = rotation_request("node-a", current, new, NOW + timedelta(seconds=1))
    assert code(_post(client, body["announcement"], twin["proof"])) == "key_mismatch"
    # Another node's key cannot rotate node-a, nor an unknown key anything.
    foreign = rotation_request("node-a", fixed_key(9), new, NOW)
    assert code(_post(client, foreign["announcement"], foreign["proof"])) == "key_mismatch"
    stranger = rotation_request("node-a", other, new, NOW)
    assert code(_post(client, stranger["announcement"], stranger["proof"])) == "unknown_key"
    # Not a rotation payload type; not a rotation payload.
    report = json.loads(envelope_bytes(make_report(current, created_at=NOW), current))
    assert code(_post(client, report, report)) == "unknown_payload_type"
    junk = sign(b'{"node_id": "node-a"}', payload_type, current).to_json()
    assert code(_post(client, junk, junk)) == "malformed_payload"
    # A key another node already holds.
    taken = rotation_request("node-a", current, fixed_key(9), NOW)
    response = _post(client, taken["announcement"], taken["proof"])
    assert response.status_code == 409
    # A revoked node cannot rotate.
    with new_session(engine) as session:
        revoke_node(session, "node-a", now=NOW)
    assert code(_post(client, body["announcement"], body["proof"])) == "revoked_key"
    with Session(engine) as session:
        assert session.get(NodeKeyRow, new.key_id) is None
