"""The admin pages' write actions (/dashboard/admin/actions/...): the same service functions
and audit entries as the API, only with the session cookie plus the page's CSRF token from the
same origin; anything else is refused with a specific 4xx and changes nothing."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey
from sqlalchemy.engine import Engine
from sqlmodel import select

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.dashboard.security import csrf_token
from coordinator.db import new_session
from coordinator.membership import create_invitation, enroll
from coordinator.models import AuditRow, InvitationRow, NodeKeyRow, NodeRow
from protocol.keys import NodeKey

from .conftest import NOW
from .helpers import bearer, make_token, register

ACTIONS = "/dashboard/admin/actions"


@pytest.fixture
def client(engine: Engine, tmp_path: Path, key_a: NodeKey) -> Iterator[TestClient]:
    register(engine, "node-a", "DE", key_a, NOW)
    settings_ = CoordinatorSettings(data_dir=tmp_path)
    with TestClient(create_app(settings_, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client


def log_in(client: TestClient, token: str) -> dict[str, str]:
    """Log in through the form; returns the headers the admin page's script sends."""
    response = client.post("/dashboard/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get("/dashboard/admin/invitations")
    match = re.search(r'data-csrf="([0-9a-f]{64})"', page.text)
    assert match, "the admin page carries its CSRF token"
    assert match.group(1) == csrf_token(token)
    return {"x-csrf-token": match.group(1)}


def audit_rows(engine: Engine) -> list[tuple[str, str, str]]:
    with new_session(engine) as session:
        rows = session.exec(select(AuditRow).order_by(AuditRow.seq)).all()  # type: ignore[arg-type]
        return [(r.actor, r.action, r.subject) for r in rows]


def invitations(engine: Engine) -> list[InvitationRow]:
    with new_session(engine) as session:
        return list(session.exec(select(InvitationRow)).all())


def pending_node(engine: Engine, node_id: str = "node-p") -> str:
    with new_session(engine) as session:
        issued = create_invitation(session, country="PL", ttl=timedelta(days=1), now=NOW, actor="t")
        done = enroll(
            session, invitation_code=issued.code, node_id=node_id, country="PL",
            operator="Policja", ed25519_public_key=NodeKey.generate().public_key_b64,
            x25519_public_key=base64.b64encode(bytes(PrivateKey.generate().public_key)).decode(),
            now=NOW, token_ttl=timedelta(days=1),
        )  # fmt: skip
        return done.key_id


def test_viewer_pages_carry_no_csrf_token(client: TestClient, engine: Engine) -> None:
    client.post("/dashboard/login", data={"token": make_token(engine, "viewer", NOW)})
    assert 'data-csrf=""' in client.get("/dashboard/").text


def test_create_and_revoke_invitation_audited_as_the_api(
    client: TestClient, engine: Engine
) -> None:
    admin = make_token(engine, "admin", NOW)
    headers = log_in(client, admin)
    before = audit_rows(engine)
    made = client.post(
        f"{ACTIONS}/invitations",
        json={"country": "pl", "ttl_hours": 6, "note": "Poland"},
        headers=headers,
    )
    assert made.status_code == 200, made.text
    body = made.json()
    assert body["country"] == "PL" and body["code"].startswith(f"inv_{body['invitation_id']}_")
    assert body["expires_at"].startswith((NOW + timedelta(hours=6)).isoformat()[:19])
    assert made.headers["cache-control"] == "no-store"
    # The API's route writes the same kind of entry: same action, actor, subject shape.
    api = client.post("/v1/invitations", json={"country": "PL"}, headers=bearer(admin))
    assert api.status_code == 200
    new = audit_rows(engine)[len(before) :]
    actor = new[0][0]
    assert new == [
        (actor, "invitation.create", body["invitation_id"]),
        (actor, "invitation.create", api.json()["invitation_id"]),
    ]
    listed = client.get("/v1/invitations").json()["invitations"]
    assert {i["invitation_id"]: i["state"] for i in listed}[body["invitation_id"]] == "pending"

    revoked = client.post(f"{ACTIONS}/invitations/{body['invitation_id']}/revoke", headers=headers)
    assert revoked.status_code == 200, revoked.text
    assert audit_rows(engine)[-1] == (actor, "invitation.revoke", body["invitation_id"])
    listed = client.get("/v1/invitations").json()["invitations"]
    assert {i["invitation_id"]: i["state"] for i in listed}[body["invitation_id"]] == "expired"
    # The revoked code no longer enrolls a node.
    refused = client.post(
        "/v1/enroll",
        json={
            "invitation": body["code"], "node_id": "node-x", "country": "PL", "operator": "x",
            "ed25519_public_key": NodeKey.generate().public_key_b64,
            "x25519_public_key": base64.b64encode(bytes(PrivateKey.generate().public_key)).decode(),
        },
    )  # fmt: skip
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "invalid_invitation"


def test_approve_and_revoke_keys_and_nodes(client: TestClient, engine: Engine) -> None:
    key_id = pending_node(engine)
    headers = log_in(client, make_token(engine, "admin", NOW))
    approved = client.post(f"{ACTIONS}/members/node-p/approve", headers=headers)
    assert approved.json() == {"node_id": "node-p", "status": "active"}
    again = client.post(f"{ACTIONS}/members/node-p/approve", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    key = client.post(f"{ACTIONS}/keys/{key_id}/revoke", headers=headers)
    assert key.json() == {"node_id": "node-p", "revoked_key_ids": [key_id]}
    node = client.post(f"{ACTIONS}/members/node-a/revoke", headers=headers)
    assert node.status_code == 200 and len(node.json()["revoked_key_ids"]) == 1
    actions = [(a, s) for _, a, s in audit_rows(engine)]
    assert actions[-3:] == [("node.approve", "node-p"), ("key.revoke", "node-p"),
                            ("node.revoke", "node-a")]  # fmt: skip
    with new_session(engine) as session:
        assert session.get(NodeRow, "node-a").status == "revoked"  # type: ignore[union-attr]
        assert session.get(NodeKeyRow, key_id).revoked_at is not None  # type: ignore[union-attr]
    for path in (
        f"{ACTIONS}/members/nobody/revoke",
        f"{ACTIONS}/keys/nokey/revoke",
        f"{ACTIONS}/members/nobody/approve",
        f"{ACTIONS}/invitations/none/revoke",
    ):
        missing = client.post(path, headers=headers)
        assert missing.status_code == 404, (path, missing.text)  # fmt: skip


def _refused(client: TestClient, engine: Engine, expect: int, code: str, **kwargs: Any) -> None:
    before = (audit_rows(engine), len(invitations(engine)))
    response = client.post(f"{ACTIONS}/invitations", json={"country": "PL"}, **kwargs)
    assert response.status_code == expect, response.text
    assert response.json()["error"]["code"] == code
    assert (audit_rows(engine), len(invitations(engine))) == before


def test_writes_without_the_csrf_token_or_from_elsewhere_are_refused(
    client: TestClient, engine: Engine
) -> None:
    admin = make_token(engine, "admin", NOW)
    headers = log_in(client, admin)
    _refused(client, engine, 403, "csrf_refused")  # no header
    _refused(client, engine, 403, "csrf_refused", headers={"x-csrf-token": "0" * 64})
    # Another session's token does not fit this one.
    other = csrf_token(make_token(engine, "admin", NOW))
    _refused(client, engine, 403, "csrf_refused", headers={"x-csrf-token": other})
    for cross in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"},
                  {"origin": "null"}):  # fmt: skip
        _refused(client, engine, 403, "csrf_refused", headers={**headers, **cross})
    # Same origin, right token: accepted.
    ok = client.post(
        f"{ACTIONS}/invitations",
        json={"country": "PL"},
        headers={**headers, "origin": "http://testserver", "sec-fetch-site": "same-origin"},
    )
    assert ok.status_code == 200, ok.text


def test_viewers_and_bearer_callers_cannot_use_the_actions(
    client: TestClient, engine: Engine
) -> None:
    viewer = make_token(engine, "viewer", NOW)
    client.post("/dashboard/login", data={"token": viewer})
    _refused(client, engine, 403, "forbidden", headers={"x-csrf-token": csrf_token(viewer)})
    # These routes are for the dashboard's session only: a bearer token alone is not a session.
    client.cookies.clear()
    admin = make_token(engine, "admin", NOW)
    _refused(
        client, engine, 401, "unauthenticated",
        headers={**bearer(admin), "x-csrf-token": csrf_token(admin)},
    )  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=30),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["country", "ttl_hours", "note", "x"]), inner, max_size=4
                )
            ),
            max_leaves=8,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_create_body_is_a_4xx_or_a_valid_invitation(
    client: TestClient, engine: Engine, body: bytes
) -> None:
    headers = log_in(client, make_token(engine, "admin", NOW))
    before = len(invitations(engine))
    response = client.post(
        f"{ACTIONS}/invitations", content=body,
        headers={**headers, "content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code in (200, 413, 422), response.text
    after = len(invitations(engine))
    if response.status_code == 200:
        assert after == before + 1
        assert re.fullmatch(r"[A-Z]{2}", response.json()["country"])
    else:
        assert after == before
        assert response.json()["error"]["code"] in ("invalid_request", "too_large")


def test_oversized_body_is_413(client: TestClient, engine: Engine) -> None:
    headers = log_in(client, make_token(engine, "admin", NOW))
    before = len(invitations(engine))
    response = client.post(
        f"{ACTIONS}/invitations", content=b" " * 5000 + b"{}",
        headers={**headers, "content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert len(invitations(engine)) == before
