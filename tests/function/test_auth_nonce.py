"""The request nonce (docs/protocol.md §5): identical requests in the same second are distinct,
a repeated (caller, nonce) is a replay (401 replayed_request), a missing nonce is refused, and
the replay store is bounded (entries expire with the skew window; a full store answers 503)."""

from __future__ import annotations

import json

import httpx
import pytest
from nacl.signing import SigningKey

from protocol.keys import encode_public_key
from protocol.lab import LabNetwork
from protocol.request_auth import HEADER_NONCE, NONCE_PATTERN, RequestSigner
from worker_function.app import create_app
from worker_function.auth import (
    Authenticator,
    NonceStoreFull,
    ReplayedRequest,
    Unauthenticated,
    parse_authorized_keys,
)
from worker_function.settings import FunctionSettings

NOW = 1_800_000_000.0
KEY_A = SigningKey(b"\x01" * 32)
KEY_B = SigningKey(b"\x02" * 32)
PATH = "/v1/analyze"
BODY = b'{"url":"ftp://x.test/a.jpg"}'
NONCE = "00112233445566778899aabbccddeeff"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _auth(clock: Clock, **kwargs: object) -> Authenticator:
    keys = parse_authorized_keys(
        {
            "node-a": encode_public_key(KEY_A.verify_key),
            "node-b": encode_public_key(KEY_B.verify_key),
        }
    )
    return Authenticator(keys, clock=clock, **kwargs)  # type: ignore[arg-type]


def _headers(
    caller: str = "node-a", key: SigningKey = KEY_A, *, now: float = NOW, nonce: str | None = None
) -> dict[str, str]:
    return RequestSigner(caller, key).headers("POST", PATH, BODY, now=now, nonce=nonce)


def test_signer_makes_a_fresh_lowercase_hex_nonce_per_request() -> None:
    nonces = {_headers()[HEADER_NONCE] for _ in range(50)}
    assert len(nonces) == 50
    assert all(NONCE_PATTERN.match(n) for n in nonces)
    with pytest.raises(ValueError, match="nonce"):
        _headers(nonce="xyz")


def test_identical_requests_in_the_same_second_are_both_accepted() -> None:
    auth = _auth(Clock())
    first, second = _headers(), _headers()
    assert first["X-Libra-Timestamp"] == second["X-Libra-Timestamp"]
    assert auth.verify("POST", PATH, first, BODY) == "node-a"
    assert auth.verify("POST", PATH, second, BODY) == "node-a"
    assert auth.live_nonces == 2


def test_a_replayed_nonce_is_refused_even_with_a_new_signature() -> None:
    auth = _auth(Clock())
    auth.verify("POST", PATH, _headers(nonce=NONCE), BODY)
    with pytest.raises(ReplayedRequest):
        auth.verify("POST", PATH, _headers(nonce=NONCE), BODY)
    # Re-signed one second later with the same nonce: still the same request identity.
    with pytest.raises(ReplayedRequest):
        auth.verify("POST", PATH, _headers(now=NOW + 1, nonce=NONCE), BODY)
    # Nonces are per caller: another caller may (by chance) use the same value.
    assert auth.verify("POST", PATH, _headers("node-b", KEY_B, nonce=NONCE), BODY) == "node-b"


def test_a_missing_nonce_is_refused() -> None:
    headers = {k: v for k, v in _headers().items() if k != HEADER_NONCE}
    with pytest.raises(Unauthenticated, match=HEADER_NONCE) as refused:
        _auth(Clock()).verify("POST", PATH, headers, BODY)
    assert refused.value.code == "unauthenticated"


def test_the_nonce_is_signed() -> None:
    headers = _headers(nonce=NONCE)
    headers[HEADER_NONCE] = "f" * 32  # swapping the nonce breaks the signature
    with pytest.raises(Unauthenticated, match="does not verify"):
        _auth(Clock()).verify("POST", PATH, headers, BODY)


def test_entries_expire_with_the_skew_window() -> None:
    clock = Clock()
    auth = _auth(clock, max_skew_seconds=300.0)
    auth.verify("POST", PATH, _headers(nonce=NONCE), BODY)
    clock.now = NOW + 300  # still inside the window: remembered
    auth.verify("POST", PATH, _headers(now=clock.now), BODY)
    assert auth.live_nonces == 2
    clock.now = NOW + 301  # the first request's timestamp is now stale: its entry goes
    auth.verify("POST", PATH, _headers(now=clock.now), BODY)
    assert auth.live_nonces == 2
    # Its replay cannot come back: the timestamp check refuses it first.
    with pytest.raises(Unauthenticated, match="clock"):
        auth.verify("POST", PATH, _headers(nonce=NONCE), BODY)


def test_a_full_store_refuses_instead_of_forgetting() -> None:
    clock = Clock()
    auth = _auth(clock, max_nonces=3, max_skew_seconds=300.0)
    for _ in range(3):
        auth.verify("POST", PATH, _headers(), BODY)
    with pytest.raises(NonceStoreFull) as full:
        auth.verify("POST", PATH, _headers(), BODY)
    assert (full.value.code, full.value.http_status) == ("overloaded", 503)
    assert full.value.retry_after == 300  # when the oldest entry expires
    clock.now = NOW + 301
    assert auth.verify("POST", PATH, _headers(now=clock.now), BODY) == "node-a"
    assert auth.live_nonces == 1


def _app(**values: object) -> object:
    settings = FunctionSettings(
        lab=None,
        decode_isolation="thread",
        authorized_keys={"node-a": encode_public_key(KEY_A.verify_key)},
        **values,  # type: ignore[arg-type]
    )
    return create_app(settings, lab=LabNetwork())


async def test_over_http_nonces_replays_and_a_full_store() -> None:
    app = _app(auth_max_nonces=2)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    signer = RequestSigner("node-a", KEY_A)
    async with httpx.AsyncClient(transport=transport, base_url="http://f.test") as client:
        same_second = [signer.headers("POST", PATH, BODY) for _ in range(2)]
        answers = [await client.post(PATH, content=BODY, headers=h) for h in same_second]
        # Both reach the URL checks (ftp is bad_url): neither was taken for a replay.
        assert [a.json()["error"]["code"] for a in answers] == ["bad_url", "bad_url"]
        replay = await client.post(PATH, content=BODY, headers=same_second[0])
        assert (replay.status_code, replay.json()["error"]["code"]) == (401, "replayed_request")
        full = await client.post(PATH, content=BODY, headers=signer.headers("POST", PATH, BODY))
        assert (full.status_code, full.json()["error"]["code"]) == (503, "overloaded")
        assert int(full.headers["retry-after"]) >= 1
        no_nonce = {
            k: v for k, v in signer.headers("POST", PATH, BODY).items() if k != HEADER_NONCE
        }
        missing = await client.post(PATH, content=json.dumps({}).encode(), headers=no_nonce)
        assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthenticated")
