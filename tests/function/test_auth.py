"""Per-caller request signatures (401/403), replay and clock-skew refusal, per-caller rate limits,
and the node's FunctionClient signing its requests."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node.dispatch import AnalyzeFailure, FunctionClient, load_request_signer
from protocol.keys import NodeKey, encode_public_key
from protocol.lab import LabNetwork
from protocol.models import HashResult
from protocol.request_auth import (
    HEADER_CALLER,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    RequestSigner,
)
from worker_function.app import AuthConfigError, create_app
from worker_function.auth import (
    Authenticator,
    RateLimited,
    RateLimiter,
    ReplayedRequest,
    Unauthenticated,
    UnknownCaller,
    parse_authorized_keys,
)
from worker_function.settings import FunctionSettings

NOW = 1_800_000_000.0
KEY_A = SigningKey(b"\x01" * 32)
KEY_B = SigningKey(b"\x02" * 32)
PATH = "/v1/analyze"


def _auth(**kwargs: object) -> Authenticator:
    keys = parse_authorized_keys({"node-a": encode_public_key(KEY_A.verify_key)})
    return Authenticator(keys, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def _signed(now: float = NOW) -> dict[str, str]:
    return RequestSigner("node-a", KEY_A).headers("POST", PATH, b"{}", now=now)


def test_a_signed_request_names_its_caller() -> None:
    assert _auth().verify("POST", PATH, _signed(), b"{}") == "node-a"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"body": b'{"url":"x"}'}, Unauthenticated),  # signature moved to another body
        ({"path": "/healthz"}, Unauthenticated),
        ({"method": "PUT"}, Unauthenticated),
        ({"key": KEY_B}, Unauthenticated),  # right name, wrong key
        ({"caller": "node-z"}, UnknownCaller),  # well signed, not authorised
        ({"now": NOW - 301}, Unauthenticated),  # stale
        ({"now": NOW + 301}, Unauthenticated),  # from the future
    ],
)
def test_tampered_or_foreign_requests_are_refused(
    change: dict[str, object], error: type[Exception]
) -> None:
    key = change.get("key", KEY_A)
    caller = str(change.get("caller", "node-a"))
    now = float(change.get("now", NOW))  # type: ignore[arg-type]
    headers = RequestSigner(caller, key).headers("POST", PATH, b"{}", now=now)  # type: ignore[arg-type]
    method = str(change.get("method", "POST"))
    path = str(change.get("path", PATH))
    body = change.get("body", b"{}")
    with pytest.raises(error):
        _auth().verify(method, path, headers, body)  # type: ignore[arg-type]


def test_missing_and_malformed_headers_are_401() -> None:
    good = _signed()
    for name in (HEADER_CALLER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE):
        with pytest.raises(Unauthenticated):
            _auth().verify("POST", PATH, {k: v for k, v in good.items() if k != name}, b"{}")
    for name, value in (
        (HEADER_SIGNATURE, "not base64!"),
        (HEADER_SIGNATURE, base64.b64encode(b"short").decode()),
        (HEADER_TIMESTAMP, "12.5"),
        (HEADER_TIMESTAMP, "-1"),
        (HEADER_CALLER, "bad name with spaces"),
        (HEADER_NONCE, "0" * 31),
        (HEADER_NONCE, "A" * 32),  # upper-case hex is not the canonical spelling
    ):
        with pytest.raises(Unauthenticated):
            _auth().verify("POST", PATH, {**good, name: value}, b"{}")


def test_a_replayed_request_is_refused() -> None:
    auth = _auth()
    headers = _signed()
    auth.verify("POST", PATH, headers, b"{}")
    with pytest.raises(ReplayedRequest, match="replay") as replayed:
        auth.verify("POST", PATH, headers, b"{}")
    assert (replayed.value.code, replayed.value.http_status) == ("replayed_request", 401)
    # A new nonce for the same body in the same second is a new request (test_auth_nonce.py).
    assert auth.verify("POST", PATH, _signed(), b"{}") == "node-a"


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from([HEADER_CALLER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE, "Other"]),
        st.text(max_size=120),
    ),
    body=st.binary(max_size=64),
)
def test_arbitrary_headers_only_ever_fail_cleanly(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises((Unauthenticated, UnknownCaller)):
        _auth().verify("POST", PATH, headers, body)


def test_authorized_keys_are_validated() -> None:
    with pytest.raises(ValueError, match="node-x"):
        parse_authorized_keys({"node-x": "not-a-key"})
    with pytest.raises(ValueError, match="caller name"):
        parse_authorized_keys({"bad name": encode_public_key(KEY_A.verify_key)})
    with pytest.raises(ValueError):
        FunctionSettings(authorized_keys={"node-x": "AAAA"})


def test_rate_limiter_is_a_token_bucket_per_caller() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after == 1
    limiter.take("b")  # another caller has its own bucket
    now[0] = 0.5  # one token back at 2/s
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_production_without_keys_refuses_to_start() -> None:
    with pytest.raises(AuthConfigError, match="open proxy"):
        create_app(FunctionSettings(lab=None))


# --------------------------------------------------------------------------- over HTTP


def _app(**values: object) -> object:
    base: dict[str, object] = {
        "lab": None,
        "decode_isolation": "thread",
        "authorized_keys": {"node-a": encode_public_key(KEY_A.verify_key)},
    }
    base.update(values)
    return create_app(FunctionSettings(**base), lab=LabNetwork())  # type: ignore[arg-type]


def _client(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://function.test")


async def test_http_status_codes_of_authentication() -> None:
    body = json.dumps({"url": "ftp://x.test/a.jpg"}).encode()
    async with _client(_app()) as client:
        unsigned = await client.post(PATH, content=body)
        assert unsigned.status_code == 401
        assert unsigned.json()["error"]["code"] == "unauthenticated"
        assert unsigned.headers["www-authenticate"].startswith("LIBRA-Ed25519")
        foreign = await client.post(
            PATH, content=body, headers=RequestSigner("node-z", KEY_B).headers("POST", PATH, body)
        )
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "forbidden_caller"
        # Signed and authorised: the request reaches the URL checks (ftp is a bad_url).
        signed = RequestSigner("node-a", KEY_A).headers("POST", PATH, body)
        accepted = await client.post(PATH, content=body, headers=signed)
        assert accepted.status_code == 400
        assert accepted.json()["error"]["code"] == "bad_url"
        replayed = await client.post(PATH, content=body, headers=signed)
        assert replayed.status_code == 401
        assert replayed.json()["error"]["code"] == "replayed_request"
        # Health checks stay open for load balancers and platforms.
        assert (await client.get("/healthz")).status_code == 200


async def test_http_rate_limit_is_429_with_retry_after() -> None:
    signer = RequestSigner("node-a", KEY_A)
    async with _client(_app(rate_limit_per_second=0.5, rate_limit_burst=2)) as client:
        statuses = []
        for i in range(3):
            # Distinct bodies: distinct signatures within the same second (no replay).
            body = json.dumps({"url": f"ftp://x.test/{i}.jpg"}).encode()
            headers = signer.headers("POST", PATH, body)
            statuses.append(await client.post(PATH, content=body, headers=headers))
    assert [r.status_code for r in statuses] == [400, 400, 429]
    assert statuses[2].json()["error"]["code"] == "rate_limited"
    assert int(statuses[2].headers["retry-after"]) >= 1


async def test_node_function_client_signs_its_requests(tmp_path: Path) -> None:
    key = NodeKey.generate()
    key_file = tmp_path / "function.key"
    key_file.write_text(key.seed_b64())
    signer = load_request_signer("node-a", key_file)
    assert signer is not None
    app = _app(authorized_keys={"node-a": key.public_key_b64})
    image = base64.b64encode(_tiny_png()).decode()
    url = f"data:image/png;base64,{image}"
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with FunctionClient("http://function.test", transport=transport, auth=signer) as fc:
        result = await fc.analyze(url)
        assert isinstance(result, HashResult), result
    async with FunctionClient("http://function.test", transport=transport, retries=0) as fc:
        refused = await fc.analyze(url)
        assert isinstance(refused, AnalyzeFailure)
        assert (refused.code, refused.http_status) == ("unauthenticated", 401)
    assert load_request_signer("node-a", None) is None
    with pytest.raises(ValueError, match="function_key_file"):
        load_request_signer("node-a", tmp_path / "absent.key")


def _tiny_png() -> bytes:
    from tests.function import helpers as h

    return h.encode(h.generated_image(7).resize((32, 24)), "PNG")
