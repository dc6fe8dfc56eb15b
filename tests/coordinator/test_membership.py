"""Federating a country: invitation, enrollment, approval, rotation, revocation, audit chain."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from nacl.public import PrivateKey
from sqlalchemy import update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from coordinator import audit
from coordinator.app import create_app
from coordinator.cli import app as cli
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.models import AuditRow
from protocol.keys import NodeKey

from .conftest import NOW, Backend
from .helpers import bearer, envelope_bytes, fixed_key, make_report, make_token

X25519 = base64.b64encode(bytes(PrivateKey(bytes([7]) * 32).public_key)).decode()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(engine: Engine, tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    settings = CoordinatorSettings(data_dir=tmp_path)
    with TestClient(create_app(settings, engine=engine, clock=clock)) as test_client:
        test_client.headers["authorization"] = f"Bearer {make_token(engine, 'admin', NOW)}"
        yield test_client


def invite(client: TestClient, country: str = "DE", ttl_hours: float = 24) -> str:
    response = client.post("/v1/invitations", json={"country": country, "ttl_hours": ttl_hours})
    assert response.status_code == 200, response.text
    return str(response.json()["code"])


def enroll(
    client: TestClient, code: str, key: NodeKey, node_id: str = "bka-de-1", country: str = "DE"
) -> tuple[int, dict[str, object]]:
    response = client.post(
        "/v1/enroll",
        json={
            "invitation": code,
            "node_id": node_id,
            "country": country,
            "operator": "BKA",
            "ed25519_public_key": key.public_key_b64,
            "x25519_public_key": X25519,
        },
        headers={"authorization": ""},
    )
    return response.status_code, response.json()


def submit(client: TestClient, key: NodeKey, node_id: str, sequence: int, **kw: object) -> str:
    created = kw.pop("created_at", NOW)
    body = envelope_bytes(
        make_report(key, node_id, sequence=sequence, created_at=created, **kw),  # type: ignore[arg-type]
        key,
    )
    response = client.post(
        "/v1/reports", content=body, headers={"content-type": "application/json"}
    )
    data = response.json()
    return str(data.get("status") or data["error"]["code"])


def test_invitation_enroll_approve_report(client: TestClient) -> None:
    key = fixed_key(11)
    code = invite(client)
    status, body = enroll(client, code, key)
    assert (
        status == 200 and body["status"] == "pending" and str(body["node_token"]).startswith("lbr_")
    )
    # Pending: signed reports are refused with their own code.
    assert submit(client, key, "bka-de-1", 1) == "node_not_active"
    # Single use.
    again, error = enroll(client, code, fixed_key(12), node_id="bka-de-2")
    assert again == 403 and "already used" in str(error["error"])
    approved = client.post("/v1/members/bka-de-1/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert client.post("/v1/members/bka-de-1/approve").status_code == 409
    assert submit(client, key, "bka-de-1", 1) == "accepted"


def test_invitation_refusals(client: TestClient, clock: Clock) -> None:
    code = invite(client, "FR", ttl_hours=1)
    assert enroll(client, code, fixed_key(13), country="DE")[0] == 403  # wrong country
    assert enroll(client, "inv_nonsense", fixed_key(13), country="FR")[0] == 403
    forged = code[:-3] + ("aaa" if not code.endswith("aaa") else "bbb")
    assert enroll(client, forged, fixed_key(13), country="FR")[0] == 403
    clock.now = NOW + timedelta(hours=2)
    status, body = enroll(client, code, fixed_key(13), country="FR")
    assert status == 403 and "expired" in str(body["error"])
    # Refused enrollments consumed nothing: a fresh invitation still works for the same key.
    clock.now = NOW
    assert enroll(client, invite(client, "FR"), fixed_key(13), country="FR")[0] == 200
    bad_key = client.post(
        "/v1/enroll",
        json={
            "invitation": invite(client), "node_id": "x-1", "country": "DE", "operator": "o",
            "ed25519_public_key": "dGVzdA==", "x25519_public_key": X25519,
        },
    )  # fmt: skip
    assert bad_key.status_code == 422


def test_rotation_overlap_and_revocation(client: TestClient, clock: Clock) -> None:
    old, new = fixed_key(21), fixed_key(22)
    enroll(client, invite(client), old)
    client.post("/v1/members/bka-de-1/approve")
    assert submit(client, old, "bka-de-1", 1) == "accepted"
    rotated = client.post(
        "/v1/members/bka-de-1/keys", json={"public_key": new.public_key_b64, "overlap_hours": 2}
    )
    assert rotated.status_code == 200, rotated.text
    # Created inside the overlap window: the old key still verifies, even when it arrives late.
    clock.now = NOW + timedelta(hours=5)
    assert submit(client, old, "bka-de-1", 2, created_at=NOW + timedelta(hours=1)) == "accepted"
    # Created after the window: refused.
    assert submit(client, old, "bka-de-1", 3, created_at=NOW + timedelta(hours=3)) == "expired_key"
    assert submit(client, new, "bka-de-1", 3, created_at=NOW + timedelta(hours=3)) == "accepted"
    # Revocation: reports signed with a revoked key are refused at once.
    assert client.post(f"/v1/keys/{new.key_id}/revoke").status_code == 200
    assert submit(client, new, "bka-de-1", 4, created_at=clock.now) == "revoked_key"
    assert client.post("/v1/members/bka-de-1/revoke").status_code == 200
    assert submit(client, old, "bka-de-1", 5, created_at=NOW + timedelta(hours=1)) == "revoked_key"


def test_audit_chain_records_and_detects_tampering(
    client: TestClient, engine: Engine, backend: Backend
) -> None:
    enroll(client, invite(client), fixed_key(31))
    client.post("/v1/members/bka-de-1/approve")
    client.post("/v1/members/bka-de-1/revoke")
    with new_session(engine) as session:
        actions = [row.action for row in audit.entries(session)]
        assert audit.verify(session).ok
    assert actions == [
        "token.create", "invitation.create", "node.enroll", "token.create", "node.approve",
        "node.revoke",
    ]  # fmt: skip
    auditor = make_token(engine, "auditor", NOW)
    check = client.get("/v1/audit/verify", headers=bearer(auditor)).json()
    assert check["ok"] and check["entries"] == 7  # + the auditor token itself

    config = Path(str(engine.url.database) + ".toml") if backend.name == "sqlite" else None
    runner = CliRunner()
    if config is not None:
        config.write_text(f"database_url = '{backend.url}'\n", encoding="utf-8")
        ok = runner.invoke(cli, ["audit", "verify", "--config", str(config)])
        assert ok.exit_code == 0 and "intact: 7 entries" in ok.output

    with engine.begin() as conn:  # an insider edits history
        conn.execute(update(AuditRow).where(AuditRow.seq == 5).values(subject="someone-else"))
    with new_session(engine) as session:
        broken = audit.verify(session)
    assert not broken.ok and broken.first_bad_seq == 5
    check = client.get("/v1/audit/verify", headers=bearer(auditor)).json()
    assert check == {**check, "ok": False, "first_bad_seq": 5}
    if config is not None:
        bad = runner.invoke(cli, ["audit", "verify", "--config", str(config)])
        assert bad.exit_code == 1 and "entry 5" in bad.output

    with engine.begin() as conn:  # deleting an entry breaks the chain too
        conn.execute(update(AuditRow).where(AuditRow.seq == 5).values(subject="bka-de-1"))
        conn.execute(AuditRow.__table__.delete().where(AuditRow.seq == 3))  # type: ignore[attr-defined]
    with new_session(engine) as session:
        assert audit.verify(session).first_bad_seq == 4


def test_cli_invite_and_approve(backend: Backend, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"database_url = '{backend.url}'\n", encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(cli, ["invite", "create", "--country", "nl", "--config", str(config)])
    assert made.exit_code == 0, made.output
    code = made.stdout.strip().splitlines()[-1]
    assert code.startswith("inv_")
    from coordinator.membership import enroll as do_enroll

    with new_session(backend.engine) as session:
        do_enroll(
            session, invitation_code=code, node_id="politie-nl-1", country="NL", operator="NP",
            ed25519_public_key=fixed_key(41).public_key_b64, x25519_public_key=X25519, now=NOW,
            token_ttl=timedelta(days=1),
        )  # fmt: skip
    listed = runner.invoke(cli, ["invite", "list", "--config", str(config)])
    assert "politie-nl-1" in listed.output
    approved = runner.invoke(cli, ["node", "approve", "politie-nl-1", "--config", str(config)])
    assert approved.exit_code == 0 and "now active" in approved.output
    again = runner.invoke(cli, ["node", "approve", "politie-nl-1", "--config", str(config)])
    assert again.exit_code == 1 and "not pending" in again.output
