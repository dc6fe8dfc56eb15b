"""The documented test vector verifies and is reproducible byte for byte."""

from __future__ import annotations

import base64
import json

from datasketches import kll_floats_sketch
from nacl.signing import VerifyKey

from protocol import REPORT_PAYLOAD_TYPE
from protocol.dsse import parse_envelope, verify
from protocol.keys import decode_public_key
from protocol.models import Report
from protocol.testvector import (
    VECTOR_PATH,
    VECTOR_REMOVALS_PATH,
    build_removals_vector,
    build_vector,
)


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


def test_removals_vector_is_reproducible_and_verifies() -> None:
    vector = json.loads(VECTOR_REMOVALS_PATH.read_text())
    assert vector == build_removals_vector()
    keyid, payload = verify(
        parse_envelope(vector["envelope"]),
        REPORT_PAYLOAD_TYPE,
        lambda _k: decode_public_key(vector["public_key_b64"]),
    )
    report = Report.from_payload(payload)
    assert keyid == report.key_id == vector["key_id"]
    (row,) = report.removals
    # The sketch decodes to the documented seconds: its median is the stated median.
    sketch = kll_floats_sketch.deserialize(base64.b64decode(row.removal_sketch or ""))
    assert sketch.n == len(vector["removal_seconds"]) == row.removed
    assert sketch.get_quantile(0.5) == row.median_seconds
    assert [s.name for s in report.attribution_sources] == ["GeoLite2-Country", "GeoLite2-ASN"]


def test_optional_members_are_absent_from_the_payload_when_empty() -> None:
    # Reports without removals keep the exact bytes of the original v1 vector.
    payload = json.loads(json.loads(VECTOR_PATH.read_text())["payload_utf8"])
    assert "removals" not in payload and "attribution_sources" not in payload
