"""Our own node passes the offline conformance check: the envelope it queues is byte for byte
what docs/protocol.md §2 prescribes (RFC 8785), and its payload and sketches conform."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.db import make_engine
from node.federation.reporter import queue_report
from node.keys.files import create_signing_key
from node.keys.signing_rotation import rotate_signing_key
from node.models import OutboxItem
from protocol.conformance_check import check_body
from protocol.keys import NodeKey
from tests.node.test_reporter import DAY, FED_KEY, T0, add_cycle


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}")
    yield eng
    eng.dispose()


def test_queued_envelope_passes_the_envelope_check(engine: Engine) -> None:
    key = NodeKey.generate()
    add_cycle(
        engine,
        T0,
        [
            ("http://a.test/1.png", "DE", 64500, "Hoster A", "md5"),
            ("http://a.test/2.png", "DE", 64500, "Hoster A", "md5"),
            ("http://b.test/1.png", "NL", 64501, "Hoster B", "pdq"),
        ],
    )
    queue_report(
        engine,
        node_id="node-a",
        key=key,
        federation_key=FED_KEY,
        period=DAY,
        now=DAY.end + timedelta(hours=1),
    )
    with Session(engine) as session:
        item = session.exec(select(OutboxItem)).one()
    found = check_body(item.envelope.encode("utf-8"), key.verify_key)
    assert found.ok and not found.skipped, found.failed
    assert "body is RFC 8785 canonical JSON" in found.passed
    # The check covered the issue 16 members too (their Theta sketches decoded and counted).
    payload = json.loads(base64.b64decode(json.loads(item.envelope)["payload"]))
    for cell in payload["cells"]:
        assert {"url_theta", "items", "item_theta"} <= set(cell), cell


def test_rotation_request_passes_the_envelope_check(tmp_path: Path) -> None:
    """What `libra node rotate-signing-key` sends, captured at the transport."""
    key_path = tmp_path / "signing.key"
    current = create_signing_key(key_path)
    sent: list[httpx.Request] = []

    def coordinator(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        proof = json.loads(request.content)["proof"]
        return httpx.Response(
            200,
            json={
                "node_id": "node-a",
                "key_id": proof["signatures"][0]["keyid"],
                "status": "rotated",
                "previous_valid_until": None,
            },
        )

    rotate_signing_key(
        "http://coordinator.test",
        key_path,
        "node-a",
        now=T0,
        transport=httpx.MockTransport(coordinator),
    )
    (request,) = sent
    assert request.headers["content-type"] == "application/json"
    found = check_body(request.content, current.verify_key)
    assert found.ok and not found.skipped, found.failed
    assert "body is RFC 8785 canonical JSON" in found.passed
