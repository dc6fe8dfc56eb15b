"""OIDC bearer mode: JWTs from an identity provider (a loopback JWKS server here)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings

from .conftest import NOW
from .helpers import bearer, make_token

ISSUER = "https://idp.example.test"
AUDIENCE = "libra-coordinator"


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[str, Any, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json", key, other
    server.shutdown()


def _jwt(key: Any, **claims: Any) -> str:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 300}
    return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def client(engine: Engine, tmp_path: Path, idp: tuple[str, Any, Any]) -> Iterator[TestClient]:
    settings = CoordinatorSettings(
        data_dir=tmp_path, oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url=idp[0]
    )
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client


def test_oidc_roles(client: TestClient, idp: tuple[str, Any, Any], engine: Engine) -> None:
    _, key, _other = idp
    viewer = bearer(_jwt(key, libra_role="viewer"))
    assert client.get("/v1/picture", headers=viewer).json()["tier"] == "viewer"
    assert client.get("/v1/audit", headers=viewer).status_code == 403
    auditor = bearer(_jwt(key, libra_role=["staff", "auditor"]))
    assert client.get("/v1/audit/verify", headers=auditor).status_code == 200
    admin = bearer(_jwt(key, libra_role="admin"))
    assert client.get("/v1/picture", headers=admin).json()["tier"] == "full"
    # Coordinator API tokens keep working alongside.
    assert (
        client.get("/v1/picture", headers=bearer(make_token(engine, "viewer", NOW))).status_code
        == 200
    )


@pytest.mark.parametrize(
    "claims, status",
    [
        ({"aud": "someone-else", "libra_role": "viewer"}, 401),
        ({"iss": "https://evil.test", "libra_role": "viewer"}, 401),
        ({"exp": int(time.time()) - 3600, "libra_role": "viewer"}, 401),
        ({"libra_role": "node"}, 403),  # nodes never use OIDC
        ({}, 403),
    ],
)
def test_oidc_refusals(
    client: TestClient, idp: tuple[str, Any, Any], claims: dict[str, Any], status: int
) -> None:
    response = client.get("/v1/picture", headers=bearer(_jwt(idp[1], **claims)))
    assert response.status_code == status, response.text


def test_oidc_wrong_signer_and_garbage(client: TestClient, idp: tuple[str, Any, Any]) -> None:
    forged = _jwt(idp[2], libra_role="admin")  # right kid, wrong key
    assert client.get("/v1/picture", headers=bearer(forged)).status_code == 401
    assert client.get("/v1/picture", headers=bearer("not.a.jwt")).status_code == 401


def test_oidc_settings_must_be_complete() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="together"):
        CoordinatorSettings(oidc_issuer=ISSUER)
