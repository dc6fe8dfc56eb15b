"""protocol/vectors/function-request-v1.json matches the code byte for byte, in both directions:
our signer reproduces the vector, and the function's verifier accepts exactly it (docs §5)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from protocol.keys import encode_public_key
from protocol.request_auth import DOMAIN, RequestSigner, signing_message
from worker_function.auth import Authenticator, Unauthenticated, parse_authorized_keys

VECTOR = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "function-request-v1.json"


@pytest.fixture(scope="module")
def vector() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(VECTOR.read_text(encoding="utf-8"))
    return loaded


def _str(vector: dict[str, object], name: str) -> str:
    value = vector[name]
    assert isinstance(value, str)
    return value


def test_message_is_the_documented_lines(vector: dict[str, object]) -> None:
    body = _str(vector, "body").encode("utf-8")
    assert hashlib.sha256(body).hexdigest() == vector["body_sha256_hex"]
    message = signing_message(
        _str(vector, "method"),
        _str(vector, "path"),
        _str(vector, "caller"),
        _str(vector, "timestamp"),
        _str(vector, "nonce"),
        body,
    )
    assert message.hex() == vector["message_hex"]
    # The lines as documented: domain, method, path, caller, timestamp, nonce, body digest.
    assert message.split(b"\n") == [line.encode() for line in vector["message_lines"]]  # type: ignore[attr-defined]
    assert message.split(b"\n")[0] == DOMAIN
    assert not message.endswith(b"\n")


def test_signer_reproduces_the_headers(vector: dict[str, object]) -> None:
    key = SigningKey(bytes.fromhex(_str(vector, "ed25519_seed_hex")))
    assert encode_public_key(key.verify_key) == vector["public_key_b64"]
    headers = RequestSigner(_str(vector, "caller"), key).headers(
        _str(vector, "method"),
        _str(vector, "path"),
        _str(vector, "body").encode(),
        now=float(_str(vector, "timestamp")),
        nonce=_str(vector, "nonce"),
    )
    expected = dict(vector["headers"])  # type: ignore[call-overload]
    expected.pop("Content-Type")
    assert headers == expected
    assert headers["X-Libra-Signature"] == vector["signature_b64"]
    assert len(base64.b64decode(headers["X-Libra-Signature"])) == 64


def test_function_accepts_the_vector_and_nothing_else(vector: dict[str, object]) -> None:
    keys = parse_authorized_keys({_str(vector, "caller"): _str(vector, "public_key_b64")})
    now = float(_str(vector, "timestamp"))
    headers: dict[str, str] = dict(vector["headers"])  # type: ignore[call-overload]
    body = _str(vector, "body").encode()
    auth = Authenticator(keys, clock=lambda: now)
    assert auth.verify("POST", _str(vector, "path"), headers, body) == vector["caller"]
    tampered = Authenticator(keys, clock=lambda: now)
    with pytest.raises(Unauthenticated):
        tampered.verify("POST", _str(vector, "path"), headers, body + b" ")


def test_protocol_document_quotes_this_vector(vector: dict[str, object]) -> None:
    # docs/protocol.md §5 prints the vector for implementers: it must not drift from the file.
    text = (VECTOR.parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for name in ("signature_b64", "nonce", "timestamp", "public_key_b64", "body_sha256_hex"):
        assert _str(vector, name) in text, name
    assert _str(vector, "body") in text
