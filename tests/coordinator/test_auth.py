"""Roles, scopes and API tokens: hashed at rest, expiring, revocable, checked on every endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from coordinator.app import create_app
from coordinator.auth import Role, authenticate
from coordinator.cli import app as cli
from coordinator.config import CoordinatorSettings
from coordinator.db import new_session
from coordinator.errors import Unauthenticated

from .conftest import NOW, Backend
from .helpers import bearer, make_token

# (method, path, json body) of endpoints that need a token, and the scope each needs.
ENDPOINTS: list[tuple[str, str, dict[str, object] | None, str]] = [
    ("GET", "/v1/picture", None, "picture:read"),
    ("GET", "/v1/picture.csv", None, "picture:read"),
    ("GET", "/v1/picture/snapshot", None, "picture:read"),
    ("GET", "/v1/nodes", None, "nodes:read"),
    ("GET", "/v1/audit", None, "audit:read"),
    ("GET", "/v1/audit/verify", None, "audit:read"),
    ("POST", "/v1/invitations", {"country": "DE"}, "members:write"),
    ("POST", "/v1/members/nobody/approve", None, "members:write"),
    ("GET", "/v1/tokens", None, "tokens:write"),
    ("GET", "/v1/federation-key/sealed", None, "federation:relay"),
    ("GET", "/v1/psi/sessions", None, "federation:relay"),  # issue 15: PSI relay
]
ROLE_SCOPES = {
    # The relay acts for a node: an admin token holds the scope but names no node.
    "admin": {s[3] for s in ENDPOINTS} - {"federation:relay"},
    "node": {"nodes:read", "federation:relay"},
    "viewer": {"picture:read", "nodes:read"},
    "auditor": {"audit:read", "nodes:read"},
}


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = CoordinatorSettings(data_dir=tmp_path)
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client


def test_no_token_is_401_everywhere(client: TestClient) -> None:
    for method, path, body, _ in ENDPOINTS:
        response = client.request(method, path, json=body)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("role", ["admin", "node", "viewer", "auditor"])
def test_role_matrix(client: TestClient, engine: Engine, role: str) -> None:
    node_id = "node-a" if role == "node" else None
    token = make_token(engine, role, NOW, node_id=node_id)
    for method, path, body, scope in ENDPOINTS:
        response = client.request(method, path, json=body, headers=bearer(token))
        if scope in ROLE_SCOPES[role]:
            assert response.status_code != 403 and response.status_code != 401, (path, role)
        else:
            assert response.status_code == 403, (path, role, response.text)
            assert response.json()["error"]["code"] == "forbidden"


def test_narrowed_scopes(client: TestClient, engine: Engine) -> None:
    token = make_token(engine, "admin", NOW, scopes=["audit:read"])
    assert client.get("/v1/audit", headers=bearer(token)).status_code == 200
    assert client.get("/v1/picture", headers=bearer(token)).status_code == 403


def test_token_secret_is_only_stored_hashed(engine: Engine) -> None:
    token = make_token(engine, "viewer", NOW)
    secret = token.split("_", 2)[2]  # lbr_<id>_<secret>: the secret may itself hold "_"
    with engine.connect() as conn:
        dump = " ".join(
            str(v) for row in conn.execute(text("SELECT * FROM api_tokens")) for v in row
        )
    assert secret not in dump and token not in dump


def test_expired_revoked_and_forged_tokens(client: TestClient, engine: Engine) -> None:
    short = make_token(engine, "viewer", NOW - timedelta(days=2), ttl=timedelta(days=1))
    response = client.get("/v1/picture", headers=bearer(short))
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]

    good = make_token(engine, "viewer", NOW)
    assert client.get("/v1/picture", headers=bearer(good)).status_code == 200
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    response = client.get("/v1/picture", headers=bearer(forged))
    assert response.status_code == 401 and "unknown" in response.json()["error"]["message"]

    admin = make_token(engine, "admin", NOW)
    token_id = good.split("_")[1]
    assert client.post(f"/v1/tokens/{token_id}/revoke", headers=bearer(admin)).status_code == 200
    response = client.get("/v1/picture", headers=bearer(good))
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    wrong_scheme = client.get("/v1/picture", headers={"authorization": f"Basic {admin}"})
    assert wrong_scheme.status_code == 401


def test_anonymous_viewer_mode(engine: Engine, tmp_path: Path) -> None:
    settings = CoordinatorSettings(data_dir=tmp_path, anonymous_role="viewer")
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as anon:
        assert anon.get("/v1/picture").json()["tier"] == "viewer"
        assert anon.get("/v1/audit").status_code == 403
        assert anon.post("/v1/invitations", json={"country": "DE"}).status_code == 403


def test_api_token_lifecycle(client: TestClient, engine: Engine) -> None:
    admin = make_token(engine, "admin", NOW)
    made = client.post(
        "/v1/tokens", json={"name": "dash", "role": "viewer", "ttl_days": 2}, headers=bearer(admin)
    )
    assert made.status_code == 200, made.text
    token = made.json()["token"]
    assert client.get("/v1/picture", headers=bearer(token)).status_code == 200
    listed = client.get("/v1/tokens", headers=bearer(admin)).json()
    assert all(item["token"] is None for item in listed)
    bad = client.post(
        "/v1/tokens",
        json={"name": "x", "role": "viewer", "scopes": ["members:write"]},
        headers=bearer(admin),
    )
    assert bad.status_code == 422 and "not available" in bad.json()["error"]["message"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_bearer_text_is_refused(text_value: str) -> None:
    # Anything that is not a token of ours fails at parsing or lookup, never with a 500.
    with new_session(_memory_engine()) as session, pytest.raises(Unauthenticated):
        authenticate(session, text_value, NOW)


_ENGINE: list[Engine] = []


def _memory_engine() -> Engine:
    if not _ENGINE:
        from coordinator.db import create_schema, make_engine

        engine = make_engine("sqlite://")
        create_schema(engine)
        _ENGINE.append(engine)
    return _ENGINE[0]


def test_cli_tokens(backend: Backend, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"database_url = '{backend.url}'\n", encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(
        cli, ["token", "create", "--name", "ops", "--role", "auditor", "--config", str(config)]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    with new_session(backend.engine) as session:
        principal = authenticate(session, token, NOW)
    assert principal.role == Role.AUDITOR
    listed = runner.invoke(cli, ["token", "list", "--config", str(config)])
    assert listed.exit_code == 0 and "auditor" in listed.output and token not in listed.output
    token_id = token.split("_")[1]
    assert runner.invoke(cli, ["token", "revoke", token_id, "--config", str(config)]).exit_code == 0
    with new_session(backend.engine) as session, pytest.raises(Unauthenticated):
        authenticate(session, token, NOW)
    bad = runner.invoke(
        cli, ["token", "create", "--name", "n", "--role", "node", "--config", str(config)]
    )
    assert bad.exit_code == 2 and "--node-id" in bad.output
