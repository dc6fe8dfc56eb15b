"""protocol/psi.py: strict wire messages, the steps' bounds, and the cardinality at the sizes
the brief names (exact at FPR 1e-9)."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from protocol.errors import BadSignature, UnknownPayloadType
from protocol.keys import NodeKey
from protocol.psi import (
    MAX_BODY_CHARS,
    PsiConsent,
    PsiMessage,
    PsiOffer,
    StepError,
    cardinality,
    client_request,
    derive_key,
    open_message,
    request_size,
    server_answer,
    sign_message,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SID = "cd" * 16


def test_cardinality_is_exact_at_a_thousand_and_eight_hundred() -> None:
    common = [secrets.token_hex(32) for _ in range(300)]
    a = common + [secrets.token_hex(32) for _ in range(700)]
    b = common + [secrets.token_hex(32) for _ in range(500)]
    seed_a, seed_b = secrets.token_bytes(32), secrets.token_bytes(32)
    req_a = client_request(derive_key(seed_a, SID, "client"), a)
    req_b = client_request(derive_key(seed_b, SID, "client"), b)
    setup_b, resp_b = server_answer(derive_key(seed_b, SID, "server"), b, req_a)
    setup_a, resp_a = server_answer(derive_key(seed_a, SID, "server"), a, req_b)
    assert cardinality(derive_key(seed_a, SID, "client"), setup_b, resp_b) == 300
    assert cardinality(derive_key(seed_b, SID, "client"), setup_a, resp_a) == 300
    assert (request_size(req_a), request_size(req_b)) == (1000, 800)
    # The wrong client key does not find the overlap: the answer is bound to the request.
    assert cardinality(derive_key(seed_b, SID, "client"), setup_b, resp_b) == 0


def test_garbage_steps_are_step_errors() -> None:
    with pytest.raises(StepError, match="not an openmined-psi"):
        request_size(b"\xff\xff\xff")
    key = derive_key(b"k" * 32, SID, "client")
    request = client_request(key, ["aa"])
    with pytest.raises(StepError):
        cardinality(key, b"\xff\x00", request)


def test_a_request_for_the_intersection_itself_is_refused() -> None:
    import private_set_intersection.python as psi  # type: ignore[import-untyped]

    client = psi.client.CreateFromKey(derive_key(b"k" * 32, SID, "client"), True)
    revealing = client.CreateRequest(["aa", "bb"]).SerializeToString()
    with pytest.raises(StepError, match="only its size"):
        request_size(revealing)
    with pytest.raises(StepError, match="only its size"):
        server_answer(derive_key(b"s" * 32, SID, "server"), ["aa"], revealing)


def test_messages_are_strict() -> None:
    with pytest.raises(ValidationError, match="family must be one of"):
        PsiOffer(
            session_id=SID, initiator="node-a", responder="node-b", family="pdq", created_at=NOW
        )
    with pytest.raises(ValidationError, match="at most 7 days"):
        PsiOffer(
            session_id=SID, initiator="node-a", responder="node-b", family="sha1",
            created_at=NOW, expires_at=NOW + timedelta(days=8),
        )  # fmt: skip
    with pytest.raises(ValidationError):
        PsiConsent(session_id=SID, node_id="node-b", decision="maybe", created_at=NOW)
    with pytest.raises(ValidationError):
        PsiMessage(session_id="XYZ", sender="node-a", step="request", created_at=NOW, body="AAAA")
    with pytest.raises(ValidationError, match="canonical base64"):
        PsiMessage(session_id=SID, sender="node-a", step="request", created_at=NOW, body="AAB=")
    with pytest.raises(ValidationError):
        too_long = "A" * (MAX_BODY_CHARS + 4)
        PsiMessage(session_id=SID, sender="node-a", step="setup", created_at=NOW, body=too_long)
    offer = PsiOffer(
        session_id=SID,
        initiator="node-a",
        responder="node-b",
        family="video-sha256",
        created_at=NOW,
    )
    assert offer.expiry == NOW + timedelta(days=1)


def test_open_message_checks_type_and_signature() -> None:
    key, other = NodeKey.generate(), NodeKey.generate()
    consent = PsiConsent(session_id=SID, node_id="node-b", decision="accept", created_at=NOW)
    envelope = sign_message(consent, key).to_json()
    opened, keyid, _ = open_message(envelope, PsiConsent, lambda _k: key.verify_key)
    assert opened == consent and keyid == key.key_id
    with pytest.raises(BadSignature):
        open_message(envelope, PsiConsent, lambda _k: other.verify_key)
    with pytest.raises(UnknownPayloadType):
        open_message(envelope, PsiMessage, lambda _k: key.verify_key)
    body = base64.b64encode(b"\x0a\x01").decode()
    message = PsiMessage(session_id=SID, sender="node-b", step="request", created_at=NOW, body=body)
    signed = sign_message(message, key).to_json()
    opened_message, _, _ = open_message(signed, PsiMessage, lambda _k: key.verify_key)
    assert opened_message.body_bytes() == b"\x0a\x01"
