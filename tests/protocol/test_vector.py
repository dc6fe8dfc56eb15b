"""The documented test vector verifies and is reproducible byte for byte."""

from __future__ import annotations

import json

from nacl.signing import VerifyKey

from protocol import REPORT_PAYLOAD_TYPE
from protocol.dsse import parse_envelope, verify
from protocol.keys import decode_public_key
from protocol.models import Report
from protocol.testvector import VECTOR_PATH, build_vector


def test_vector_file_is_reproducible() -> None:
    assert json.loads(VECTOR_PATH.read_text()) == build_vector()


def test_vector_verifies_from_the_file_alone() -> None:
    vector = json.loads(VECTOR_PATH.read_text())
    public = decode_public_key(vector["public_key_b64"])

    def resolve(keyid: str) -> VerifyKey:
        assert keyid == vector["key_id"]
        return public

    keyid, payload = verify(parse_envelope(vector["envelope"]), REPORT_PAYLOAD_TYPE, resolve)
    assert payload.decode() == vector["payload_utf8"]
    assert bytes.fromhex(vector["pae_hex"]).endswith(payload)
    assert Report.from_payload(payload).key_id == keyid
