"""node/federation/psi.py without a coordinator: which entries form the set, and a coordinator
that fakes a node's consent gets nothing from it (the node checks its own signatures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from node.db import make_engine
from node.federation.psi import PsiContext, PsiError, load_set, run
from node.keys.list_encryption import ListKey
from node.models import ListEntry, ListVersion
from protocol.keys import NodeKey
from protocol.models import utcnow
from protocol.psi import PsiConsent, PsiOffer, sign_message

SID = "ef" * 16


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}", ListKey(b"k" * 32))


def _add(engine: Engine, rows: list[tuple[str, str, str, bool]]) -> None:
    with Session(engine) as session:
        version = ListVersion(source="t", version="1", format="plain")
        session.add(version)
        session.flush()
        assert version.id is not None
        for family, value, media, retired in rows:
            session.add(
                ListEntry(
                    family=family,
                    value=value,
                    media=media,
                    retired=retired,
                    list_version_id=version.id,
                )
            )
        session.commit()


def test_the_set_is_the_live_entries_of_the_family(engine: Engine) -> None:
    live, retired, video, other = "a" * 64, "b" * 64, "c" * 64, "d" * 40
    _add(
        engine,
        [
            ("sha256", live, "image", False),
            ("sha256", retired, "image", True),
            ("sha256", video, "video", False),
            ("sha1", other, "image", False),
        ],
    )
    assert load_set(engine, "sha256") == [live]  # decrypted, as the matcher reads them
    assert load_set(engine, "video-sha256") == [video]
    assert load_set(engine, "sha1") == [other]
    assert load_set(engine, "md5") == []
    with pytest.raises(PsiError, match="family must be one of"):
        load_set(engine, "pdq")


class FakeCoordinator:
    """Answers GET with a crafted session; records every POST (there must be none)."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session
        self.posts: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            self.posts.append(request.url.path)
            return httpx.Response(200, json={})
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json={"session_id": SID, "messages": [], "signing_keys": {}})
        return httpx.Response(200, json=self.session)


def _session(offer_key: NodeKey, consent_key: NodeKey, me: str = "node-b") -> dict[str, Any]:
    now = utcnow()
    offer = PsiOffer(
        session_id=SID, initiator="node-a", responder="node-b", family="sha256", created_at=now
    )
    consent = PsiConsent(session_id=SID, node_id="node-b", decision="accept", created_at=now)
    return {
        "session_id": SID,
        "initiator": "node-a",
        "responder": "node-b",
        "family": "sha256",
        "status": "accepted",
        "created_at": "x",
        "expires_at": "y",
        "offer": sign_message(offer, offer_key).to_json(),
        "consent": sign_message(consent, consent_key).to_json(),
        "steps": [],
        "signing_keys": {
            offer_key.key_id: offer_key.public_key_b64,
            consent_key.key_id: consent_key.public_key_b64,
        },
    }


def _context(engine: Engine, node_id: str, key: NodeKey, fake: FakeCoordinator) -> PsiContext:
    return PsiContext(
        engine=engine,
        node_id=node_id,
        key=key,
        coordinator_url="http://127.0.0.1:9",
        token="lbr_test",  # a placeholder: the fake coordinator checks nothing
        clock=utcnow,
        transport=httpx.MockTransport(fake.handler),
    )


def test_a_faked_consent_of_this_node_sends_nothing(engine: Engine) -> None:
    _add(engine, [("sha256", "a" * 64, "image", False)])
    me, initiator, coordinator_key = NodeKey.generate(), NodeKey.generate(), NodeKey.generate()
    # The coordinator claims node-b (this node) accepted, with a key that is not this node's.
    fake = FakeCoordinator(_session(initiator, coordinator_key))
    with pytest.raises(PsiError, match="consent does not verify as signed by node-b"):
        run(_context(engine, "node-b", me, fake), SID)
    assert fake.posts == []
    # With this node's own signature on the consent it goes ahead and posts its request.
    honest = FakeCoordinator(_session(initiator, me))
    result = run(_context(engine, "node-b", me, honest), SID)
    assert result.sent == ["request"] and result.own_size == 1
    assert honest.posts == [f"/v1/psi/sessions/{SID}/messages"]


def test_a_faked_offer_of_this_node_sends_nothing(engine: Engine) -> None:
    me, responder, coordinator_key = NodeKey.generate(), NodeKey.generate(), NodeKey.generate()
    fake = FakeCoordinator(_session(coordinator_key, responder))
    with pytest.raises(PsiError, match="offer does not verify as signed by node-a"):
        run(_context(engine, "node-a", me, fake), SID)
    assert fake.posts == []


def test_a_session_of_other_nodes_is_refused(engine: Engine) -> None:
    a, b = NodeKey.generate(), NodeKey.generate()
    fake = FakeCoordinator(_session(a, b))
    with pytest.raises(PsiError, match="not a party"):
        run(_context(engine, "node-c", NodeKey.generate(), fake), SID)
    assert fake.posts == []
