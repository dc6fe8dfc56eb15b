"""The PSI relay's rules (coordinator/psi/): who may create, answer, post to and read a session,
and the clear JSON error for each refusal (never a 5xx)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.models import NodeKeyRow, NodeRow, NodeStatus
from coordinator.psi.models import PsiMessageRow, PsiSessionRow
from protocol.dsse import sign
from protocol.keys import NodeKey
from protocol.psi import (
    PSI_MESSAGE_PAYLOAD_TYPE,
    PSI_OFFER_PAYLOAD_TYPE,
    PsiConsent,
    PsiMessage,
    PsiOffer,
    sign_message,
)

from .conftest import NOW
from .helpers import bearer, fixed_key, make_token, register

SID = "ab" * 16
NODES = ("node-a", "node-b", "node-c")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Relay:
    def __init__(self, client: TestClient, keys: dict[str, NodeKey], tokens: dict[str, str]):
        self.client, self.keys, self.tokens = client, keys, tokens

    def post(self, node: str, path: str, message: Any, key: NodeKey | None = None) -> Any:
        envelope = sign_message(message, key or self.keys[node])
        return self.client.post(path, json=envelope.to_json(), headers=bearer(self.tokens[node]))

    def get(self, node: str, path: str) -> Any:
        return self.client.get(path, headers=bearer(self.tokens[node]))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def relay(engine: Engine, tmp_path: Path, clock: Clock) -> Iterator[Relay]:
    keys = {node: fixed_key(i + 1) for i, node in enumerate(NODES)}
    for node, key in keys.items():
        register(engine, node, "DE", key, NOW)
    tokens = {node: make_token(engine, "node", now=NOW, node_id=node) for node in NODES}
    tokens["admin"] = make_token(engine, "admin", now=NOW)
    settings = CoordinatorSettings(signing_key_file=tmp_path / "coordinator.key")
    with TestClient(create_app(settings, engine=engine, clock=clock)) as client:
        yield Relay(client, keys, tokens)


def _offer(**changes: Any) -> PsiOffer:
    fields: dict[str, Any] = {
        "session_id": SID,
        "initiator": "node-a",
        "responder": "node-b",
        "family": "sha256",
        "created_at": NOW,
    }
    return PsiOffer(**{**fields, **changes})


def _consent(decision: str = "accept", node: str = "node-b") -> PsiConsent:
    return PsiConsent(session_id=SID, node_id=node, decision=decision, created_at=NOW)


def _step(sender: str, step: str = "request", body: bytes = b"\x0a\x03abc") -> PsiMessage:
    return PsiMessage(
        session_id=SID,
        sender=sender,
        step=step,
        created_at=NOW,
        body=base64.b64encode(body).decode(),
    )


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def _accepted(relay: Relay) -> None:
    assert relay.post("node-a", "/v1/psi/sessions", _offer()).json()["status"] == "created"
    assert relay.post("node-b", f"/v1/psi/sessions/{SID}/consent", _consent()).status_code == 200


def test_a_session_runs_between_its_two_nodes_only(relay: Relay, engine: Engine) -> None:
    created = relay.post("node-a", "/v1/psi/sessions", _offer())
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["status"] == "created" and body["session"]["status"] == "offered"
    assert body["session"]["expires_at"] == "2026-11-25T12:00:00Z"  # the default day
    assert list(body["session"]["signing_keys"]) == [relay.keys["node-a"].key_id]
    again = relay.post("node-a", "/v1/psi/sessions", _offer())
    assert again.json()["status"] == "unchanged"

    incoming = relay.get("node-b", "/v1/psi/sessions?incoming=true").json()["sessions"]
    assert [s["session_id"] for s in incoming] == [SID]
    assert relay.get("node-a", "/v1/psi/sessions?incoming=true").json() == {"sessions": []}
    # Before the accept: no step message from anyone.
    early = relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-a"))
    assert "need the responder's accept" in _error(early, 409, "conflict")
    # The third node: the session does not exist for it.
    for path in (f"/v1/psi/sessions/{SID}", f"/v1/psi/sessions/{SID}/messages"):
        _error(relay.get("node-c", path), 404, "not_found")
    _error(relay.post("node-c", f"/v1/psi/sessions/{SID}/consent", _consent()), 404, "not_found")
    # Only the responder answers.
    self_accept = relay.post("node-a", f"/v1/psi/sessions/{SID}/consent", _consent(node="node-a"))
    _error(self_accept, 403, "forbidden")

    accepted = relay.post("node-b", f"/v1/psi/sessions/{SID}/consent", _consent())
    assert accepted.json()["status"] == "decided"
    assert accepted.json()["session"]["status"] == "accepted"
    assert relay.get("node-b", "/v1/psi/sessions?incoming=true").json() == {"sessions": []}
    changed = relay.post("node-b", f"/v1/psi/sessions/{SID}/consent", _consent("decline"))
    _error(changed, 409, "conflict")

    posted = relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-a"))
    assert posted.json()["status"] == "stored"
    assert posted.json()["session"]["steps"] == [
        {"sender": "node-a", "step": "request", "bytes": 5}
    ]
    same = relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-a"))
    assert same.json()["status"] == "unchanged"
    other = relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-a", body=b"x"))
    _error(other, 409, "conflict")
    third = relay.post("node-c", f"/v1/psi/sessions/{SID}/messages", _step("node-c"))
    _error(third, 404, "not_found")

    listed = relay.get("node-b", f"/v1/psi/sessions/{SID}/messages").json()
    assert [(m["sender"], m["step"]) for m in listed["messages"]] == [("node-a", "request")]
    assert listed["signing_keys"] == {
        relay.keys["node-a"].key_id: relay.keys["node-a"].public_key_b64
    }
    only_b = relay.get("node-b", f"/v1/psi/sessions/{SID}/messages?sender=node-b").json()
    assert only_b["messages"] == []
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(PsiMessageRow)).one() == 1


def test_the_caller_must_be_the_signer(relay: Relay) -> None:
    # node-b's token posting node-a's signed offer: the envelope names another initiator.
    stolen = relay.client.post(
        "/v1/psi/sessions",
        json=sign_message(_offer(), relay.keys["node-a"]).to_json(),
        headers=bearer(relay.tokens["node-b"]),
    )
    _error(stolen, 403, "key_mismatch")
    # node-a's token with an offer signed by node-b's key.
    forged = relay.post("node-a", "/v1/psi/sessions", _offer(), key=relay.keys["node-b"])
    _error(forged, 403, "key_mismatch")
    unknown = relay.post("node-a", "/v1/psi/sessions", _offer(), key=fixed_key(9))
    _error(unknown, 401, "unknown_key")
    admin = relay.post("admin", "/v1/psi/sessions", _offer(), key=relay.keys["node-a"])
    _error(admin, 403, "forbidden")
    anonymous = relay.client.post("/v1/psi/sessions", json={})
    _error(anonymous, 401, "unauthenticated")
    _accepted(relay)
    spoofed = relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-b"))
    assert "another session or sender" in _error(spoofed, 422, "invalid_request")


def test_a_node_no_longer_active_or_a_replaced_key_cannot_post(
    relay: Relay, engine: Engine
) -> None:
    _accepted(relay)
    with Session(engine) as session:
        key = session.get(NodeKeyRow, relay.keys["node-a"].key_id)
        assert key is not None
        key.valid_until = NOW  # rotated out: messages are signed now, so it no longer counts
        session.add(key)
        node = session.get(NodeRow, "node-b")
        assert node is not None
        node.status = NodeStatus.REVOKED.value
        session.add(node)
        session.commit()
    replaced = relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-a"))
    _error(replaced, 403, "expired_key")
    revoked = relay.post("node-b", f"/v1/psi/sessions/{SID}/messages", _step("node-b"))
    _error(revoked, 403, "node_not_active")


def test_bad_bodies_get_clear_errors(relay: Relay) -> None:
    headers = {**bearer(relay.tokens["node-a"]), "content-type": "application/json"}

    def post(body: bytes, content_type: str = "application/json") -> Any:
        sent = {**headers, "content-type": content_type}
        return relay.client.post("/v1/psi/sessions", content=body, headers=sent)

    def signed(payload: bytes, payload_type: str = PSI_OFFER_PAYLOAD_TYPE) -> bytes:
        return json.dumps(sign(payload, payload_type, relay.keys["node-a"]).to_json()).encode()

    _error(post(b"{"), 400, "malformed_envelope")
    _error(post(b"x", "text/plain"), 415, "unsupported_media_type")
    _error(post(b"[" + b" " * 20_000 + b"]"), 413, "too_large")
    wrong_type = signed(_offer().to_payload(), PSI_MESSAGE_PAYLOAD_TYPE)
    _error(post(wrong_type), 400, "unknown_payload_type")
    payload = json.loads(_offer().to_payload())
    not_canonical = json.dumps(payload, indent=1).encode()
    _error(post(signed(not_canonical)), 422, "malformed_payload")
    for change, needle in (
        ({"family": "pdq"}, "family must be one of"),
        ({"responder": "node-a"}, "cannot run psi with itself"),
        ({"expires_at": "2026-12-24T12:00:00Z"}, "at most 7 days"),
        ({"created_at": "2026-11-24T12:00:00.5Z"}, "exactly the form"),
        ({"extra": 1}, "extra"),
    ):
        bad = json.dumps({**payload, **change}, sort_keys=True, separators=(",", ":")).encode()
        assert needle in _error(post(signed(bad)), 422, "malformed_payload").lower()
    stale = relay.post("node-a", "/v1/psi/sessions", _offer(created_at=NOW - timedelta(hours=1)))
    _error(stale, 400, "stale_timestamp")
    stranger = relay.post("node-a", "/v1/psi/sessions", _offer(responder="node-z"))
    assert "node-z is not an active member" in _error(stranger, 422, "invalid_request")
    _error(relay.get("node-a", "/v1/psi/sessions/not-hex"), 422, "invalid_request")
    relay.post("node-a", "/v1/psi/sessions", _offer())
    clash = relay.post("node-a", "/v1/psi/sessions", _offer(family="md5"))
    _error(clash, 409, "conflict")


def test_an_expired_session_is_gone_with_its_messages(
    relay: Relay, engine: Engine, clock: Clock
) -> None:
    _accepted(relay)
    relay.post("node-a", f"/v1/psi/sessions/{SID}/messages", _step("node-a"))
    clock.now = NOW + timedelta(days=1)
    _error(relay.get("node-a", f"/v1/psi/sessions/{SID}"), 404, "not_found")
    assert relay.get("node-a", "/v1/psi/sessions").json() == {"sessions": []}
    # The next write purges it.
    late = relay.post("node-b", f"/v1/psi/sessions/{SID}/messages", _step("node-b"))
    _error(late, 404, "not_found")
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(PsiSessionRow)).one() == 0
        assert session.exec(select(func.count()).select_from(PsiMessageRow)).one() == 0
