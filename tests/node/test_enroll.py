"""Joining a federation end to end (coordinator app in process): the federation key travels
sealed, and the coordinator never holds it in the clear."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from coordinator.app import create_app
from coordinator.config import CoordinatorSettings
from coordinator.db import create_schema, make_engine, new_session
from coordinator.membership import approve, create_invitation
from node.federation.enroll import (
    EnrollError,
    create_x25519_key,
    enroll,
    fetch_federation_key,
    load_x25519_key,
    open_federation_key,
    seal_federation_key,
    sponsor,
)
from protocol.keys import NodeKey

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
URL = "http://coordinator.test"


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[tuple[Engine, httpx.BaseTransport]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    create_schema(engine)
    app = create_app(CoordinatorSettings(data_dir=tmp_path), engine=engine, clock=lambda: NOW)
    with TestClient(app) as client:
        yield engine, client._transport
    engine.dispose()


def _join(
    engine: Engine, transport: httpx.BaseTransport, node_id: str, tmp: Path
) -> tuple[str, Path]:
    """Invite, enroll and approve a node; returns (node token, X25519 key file)."""
    with new_session(engine) as session:
        code = create_invitation(
            session, country="DE", ttl=timedelta(days=1), now=NOW, actor="t"
        ).code
    x_path = tmp / f"{node_id}.x25519"
    done = enroll(
        URL, invitation=code, node_id=node_id, country="DE", operator="BKA",
        ed25519_public_key=NodeKey.generate().public_key_b64, x25519_key=create_x25519_key(x_path),
        transport=transport,
    )  # fmt: skip
    with new_session(engine) as session:
        approve(session, node_id, now=NOW, actor="t")
    return done.node_token, x_path


def _database_text(engine: Engine) -> str:
    parts: list[str] = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.extend(str(value) for value in row)
    return "\n".join(parts)


def test_federation_key_relay(
    coordinator: tuple[Engine, httpx.BaseTransport], tmp_path: Path
) -> None:
    engine, transport = coordinator
    federation_key = secrets.token_bytes(32)
    sponsor_token, _ = _join(engine, transport, "bka-de-1", tmp_path)
    new_token, new_x = _join(engine, transport, "bka-de-2", tmp_path)

    with pytest.raises(EnrollError, match="0 sponsor"):
        fetch_federation_key(URL, new_token, load_x25519_key(new_x), transport=transport)
    result = sponsor(URL, sponsor_token, federation_key, transport=transport)
    assert result.sealed_for == ["bka-de-2"]
    # Idempotent: nothing is left to seal.
    assert sponsor(URL, sponsor_token, federation_key, transport=transport).sealed_for == []

    fetched = fetch_federation_key(URL, new_token, load_x25519_key(new_x), transport=transport)
    assert fetched.key == federation_key and fetched.sponsors == ["bka-de-1"]

    # The coordinator stored only ciphertext: no encoding of the key appears anywhere in it.
    dump = _database_text(engine).encode()
    for form in (
        federation_key,
        base64.b64encode(federation_key),
        base64.urlsafe_b64encode(federation_key),
        federation_key.hex().encode(),
    ):
        assert form not in dump
    # And nothing that opens the blob: the new node's X25519 private key is not in it either.
    assert base64.b64encode(bytes(load_x25519_key(new_x))) not in dump
    with pytest.raises(EnrollError, match="2 required"):
        fetch_federation_key(
            URL, new_token, load_x25519_key(new_x), min_sponsors=2, transport=transport
        )


def test_disagreeing_sponsors_are_detected(
    coordinator: tuple[Engine, httpx.BaseTransport], tmp_path: Path
) -> None:
    engine, transport = coordinator
    token_a, _ = _join(engine, transport, "node-a1", tmp_path)
    token_b, _ = _join(engine, transport, "node-b1", tmp_path)
    token_c, x_c = _join(engine, transport, "node-c1", tmp_path)
    sponsor(URL, token_a, secrets.token_bytes(32), transport=transport)
    sponsor(URL, token_b, secrets.token_bytes(32), transport=transport)
    with pytest.raises(EnrollError, match="DIFFERENT"):
        fetch_federation_key(URL, token_c, load_x25519_key(x_c), transport=transport)


def test_a_pending_node_cannot_sponsor(
    coordinator: tuple[Engine, httpx.BaseTransport], tmp_path: Path
) -> None:
    engine, transport = coordinator
    _join(engine, transport, "node-a1", tmp_path)
    with new_session(engine) as session:
        code = create_invitation(
            session, country="DE", ttl=timedelta(days=1), now=NOW, actor="t"
        ).code
    pending = enroll(
        URL, invitation=code, node_id="node-p1", country="DE", operator="X",
        ed25519_public_key=NodeKey.generate().public_key_b64,
        x25519_key=create_x25519_key(tmp_path / "p.x25519"), transport=transport,
    )  # fmt: skip
    with pytest.raises(EnrollError, match="409"):
        sponsor(URL, pending.node_token, secrets.token_bytes(32), transport=transport)


def test_seal_open_roundtrip_and_wrong_key(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    mine = create_x25519_key(tmp_path / "x.key")
    assert oct(os.stat(tmp_path / "x.key").st_mode & 0o777) == "0o600"
    other = create_x25519_key(tmp_path / "y.key")
    sealed = seal_federation_key(key, base64.b64encode(bytes(mine.public_key)).decode())
    assert open_federation_key(sealed, mine) == key
    with pytest.raises(EnrollError):
        open_federation_key(sealed, other)
    with pytest.raises(EnrollError):
        seal_federation_key(key, "not base64!")


def test_enroll_errors_are_explicit(
    coordinator: tuple[Engine, httpx.BaseTransport], tmp_path: Path
) -> None:
    _, transport = coordinator
    with pytest.raises(EnrollError, match="invalid_invitation"):
        enroll(
            URL, invitation="inv_0000000000000000_" + "a" * 43, node_id="n-1", country="DE",
            operator="X", ed25519_public_key=NodeKey.generate().public_key_b64,
            x25519_key=create_x25519_key(tmp_path / "z.key"), transport=transport,
        )  # fmt: skip
