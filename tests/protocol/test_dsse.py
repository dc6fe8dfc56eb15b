"""DSSE signing and verification: every failure has its own error type."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from protocol import REPORT_PAYLOAD_TYPE
from protocol.dsse import pae, parse_envelope, sign, verify
from protocol.errors import (
    BadSignature,
    MalformedEnvelope,
    UnknownKey,
    UnknownPayloadType,
)
from protocol.keys import NodeKey


def resolver(*keys: NodeKey):  # type: ignore[no-untyped-def]
    table = {k.key_id: k.verify_key for k in keys}

    def resolve(keyid: str) -> VerifyKey:
        if keyid not in table:
            raise UnknownKey(f"unknown key {keyid}")
        return table[keyid]

    return resolve


def test_pae_matches_the_dsse_spec_example() -> None:
    # The DSSE v1 specification's worked example.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_round_trip_returns_exact_payload_bytes() -> None:
    key = NodeKey.generate()
    payload = b'{"a":1}'
    env = sign(payload, REPORT_PAYLOAD_TYPE, key)
    wire = json.dumps(env.to_json())
    keyid, body = verify(parse_envelope(wire), REPORT_PAYLOAD_TYPE, resolver(key))
    assert keyid == key.key_id
    assert body == payload


def test_tampered_payload_is_bad_signature() -> None:
    key = NodeKey.generate()
    env = sign(b'{"matches":1}', REPORT_PAYLOAD_TYPE, key).to_json()
    env["payload"] = base64.b64encode(b'{"matches":9}').decode()
    with pytest.raises(BadSignature):
        verify(parse_envelope(env), REPORT_PAYLOAD_TYPE, resolver(key))


def test_tampered_payload_type_is_rejected() -> None:
    key = NodeKey.generate()
    env = sign(b"{}", REPORT_PAYLOAD_TYPE, key).to_json()
    env["payloadType"] = "application/json"
    with pytest.raises(UnknownPayloadType):
        verify(parse_envelope(env), REPORT_PAYLOAD_TYPE, resolver(key))


def test_signature_by_another_key_under_a_known_keyid_is_bad_signature() -> None:
    real, forger = NodeKey.generate(), NodeKey.generate()
    env = sign(b"{}", REPORT_PAYLOAD_TYPE, forger).to_json()
    env["signatures"][0]["keyid"] = real.key_id
    with pytest.raises(BadSignature):
        verify(parse_envelope(env), REPORT_PAYLOAD_TYPE, resolver(real))


def test_unknown_key_is_rejected() -> None:
    env = sign(b"{}", REPORT_PAYLOAD_TYPE, NodeKey.generate())
    with pytest.raises(UnknownKey):
        verify(env, REPORT_PAYLOAD_TYPE, resolver(NodeKey.generate()))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"payloadType": "x", "payload": "e30=", "signatures": []}',
        b'{"payloadType": "x", "payload": "e30=", "signatures": [{"keyid": "k"}]}',
        b'{"payloadType": "x", "payload": "e30=", "signatures": [{"keyid": "k", "sig": "s"}],'
        b' "x": 1}',
    ],
)
def test_malformed_envelopes(raw: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        parse_envelope(raw)


def test_non_base64_payload_is_malformed() -> None:
    key = NodeKey.generate()
    env = sign(b"{}", REPORT_PAYLOAD_TYPE, key).to_json()
    env["payload"] = "***"
    with pytest.raises(MalformedEnvelope):
        verify(parse_envelope(env), REPORT_PAYLOAD_TYPE, resolver(key))


def _signed(payload: bytes = b"{}") -> dict[str, Any]:
    env: dict[str, Any] = sign(payload, REPORT_PAYLOAD_TYPE, NodeKey.generate()).to_json()
    return env


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payload", "e30"),  # unpadded
        ("payload", "e3 0="),  # whitespace inside
        ("payload", "e30=\n"),  # trailing newline
        ("payload", "e31="),  # non-canonical: unused bits set, decodes to the same "{}"
        ("payload", "e3-_"),  # URL-safe alphabet
        ("payload", "ZTMw\u00e9"),  # non-ASCII
        ("payload", 5),
        ("sig", "AAAA"[:3]),
        ("sig", "AAAA" * 21 + "AB=="),  # 64 bytes, but last unused bits set
        ("keyid", "A" * 64),  # upper case
        ("keyid", "a" * 63),
        ("keyid", "k"),
    ],
)
def test_noncanonical_base64_and_bad_keyids_are_malformed(field: str, value: Any) -> None:
    env = _signed()
    if field == "payload":
        env["payload"] = value
    else:
        env["signatures"][0][field] = value
    with pytest.raises(MalformedEnvelope):
        parse_envelope(env)


def test_base64_padding_check_is_exact() -> None:
    # The canonical spelling passes: the check refuses only alternatives.
    env = _signed(b"{}")
    assert parse_envelope(env).payload == "e30="
    assert base64.b64decode("e31=") == b"{}"  # the alternative the test above refuses


_ENVELOPE = (
    b'{"payloadType":"x","payload":"e30=","signatures":[{"keyid":"' + b"a" * 64 + b'","sig":"'
    + base64.b64encode(bytes(64)) + b'"}]}'
)  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        _ENVELOPE.replace(b'{"payloadType":"x"', b'{"payloadType":"y","payloadType":"x"'),
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * 100_000,
        _ENVELOPE.replace(b'"payloadType":"x"', b'"payloadType":"x\\ud800"'),
    ],
    ids=["duplicate", "deep", "unclosed", "lone-surrogate"],
)
def test_strict_json_defects_are_malformed_envelopes(raw: bytes) -> None:
    # Without the defect, the same text is a well-formed envelope.
    parse_envelope(_ENVELOPE)
    with pytest.raises(MalformedEnvelope):
        parse_envelope(raw)


def test_two_signatures_are_refused() -> None:
    key = NodeKey.generate()
    env = sign(b"{}", REPORT_PAYLOAD_TYPE, key).to_json()
    env["signatures"] = env["signatures"] * 2
    with pytest.raises(MalformedEnvelope):
        verify(parse_envelope(env), REPORT_PAYLOAD_TYPE, resolver(key))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_untyped_errors(raw: bytes) -> None:
    from protocol.errors import ProtocolError

    key = NodeKey.generate()
    with contextlib.suppress(ProtocolError):
        verify(parse_envelope(raw), REPORT_PAYLOAD_TYPE, resolver(key))
