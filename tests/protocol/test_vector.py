"""The documented test vectors are reproducible byte for byte and verify from the files alone."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from datasketches import hll_sketch, kll_floats_sketch, tgt_hll_type
from nacl.bindings import crypto_box_seed_keypair
from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from protocol import KEY_ROTATION_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE
from protocol.canonical import canonical_json
from protocol.dsse import parse_envelope, verify
from protocol.keys import decode_public_key, key_id
from protocol.models import KeyRotation, Report
from protocol.testvector import (
    BATCH_PATH,
    ENROLL_PATH,
    FEDERATION_KEY_PATH,
    KEY_ROTATION_PATH,
    VECTOR_COVERAGE_PATH,
    VECTOR_METHODS_PATH,
    VECTOR_PATH,
    VECTOR_REMOVALS_PATH,
    VECTOR_SKETCH_PATH,
    VECTORS_DIR,
    render,
)
from protocol.testvector_discovery import VECTOR_DISCOVERY_PATH
from protocol.testvector_files import all_vectors
from protocol.testvector_video import VECTOR_VIDEO_PATH


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _signer(seed_hex: str) -> VerifyKey:
    return SigningKey(bytes.fromhex(seed_hex)).verify_key


def test_every_vector_file_is_reproducible() -> None:
    built = all_vectors()
    on_disk = {p for p in VECTORS_DIR.rglob("*.json") if p.name != "function-request-v1.json"}
    assert set(built) == on_disk  # no stale file, none missing
    for path, vector in built.items():
        assert path.read_text(encoding="utf-8") == render(vector), path


def test_vector_generation_is_deterministic() -> None:
    # Built twice in one process: no randomness anywhere (seeds, sketches, sealed box).
    assert {p: render(v) for p, v in all_vectors().items()} == {
        p: render(v) for p, v in all_vectors().items()
    }


@pytest.mark.parametrize(
    "path",
    [
        VECTOR_PATH,
        VECTOR_REMOVALS_PATH,
        VECTOR_SKETCH_PATH,
        VECTOR_METHODS_PATH,
        VECTOR_COVERAGE_PATH,
        VECTOR_VIDEO_PATH,
        VECTOR_DISCOVERY_PATH,
    ],
)
def test_report_vectors_verify_from_the_file_alone(path: Path) -> None:
    vector = _load(path)
    public = decode_public_key(vector["public_key_b64"])
    assert bytes(public) == bytes(_signer(vector["ed25519_seed_hex"]))
    assert key_id(public) == vector["key_id"]
    # The wire body is the RFC 8785 serialisation of the envelope.
    body = vector["envelope_canonical"].encode()
    assert canonical_json(json.loads(body)) == body
    assert json.loads(body) == vector["envelope"]

    def resolve(keyid: str) -> VerifyKey:
        assert keyid == vector["key_id"]
        return public

    keyid, payload = verify(parse_envelope(body), REPORT_PAYLOAD_TYPE, resolve)
    assert payload.decode() == vector["payload_utf8"]
    assert canonical_json(json.loads(payload)) == payload
    assert bytes.fromhex(vector["pae_hex"]).endswith(payload)
    report = Report.from_payload(payload)
    assert report.key_id == keyid
    assert vector["response"]["body"] == {"report_id": report.report_id, "status": "accepted"}


def test_removals_vector_sketch_holds_the_listed_seconds() -> None:
    vector = _load(VECTOR_REMOVALS_PATH)
    report = Report.from_payload(vector["payload_utf8"].encode())
    (row,) = report.removals
    sketch = kll_floats_sketch.deserialize(base64.b64decode(row.removal_sketch or ""))
    assert sketch.n == len(vector["removal_seconds"]) == row.removed
    assert sketch.get_quantile(0.5) == row.median_seconds
    assert [s.name for s in report.attribution_sources] == ["GeoLite2-Country", "GeoLite2-ASN"]


def test_optional_members_are_absent_from_the_payload_when_empty() -> None:
    payload = json.loads(_load(VECTOR_PATH)["payload_utf8"])
    assert "removals" not in payload and "attribution_sources" not in payload
    assert "coverage" not in payload and "discovery" not in payload
    for cell in payload["cells"]:
        assert not {"methods", "url_theta", "items", "item_theta"} & set(cell)


def test_methods_vector_breaks_each_cell_down() -> None:
    report = Report.from_payload(_load(VECTOR_METHODS_PATH)["payload_utf8"].encode())
    for cell in report.cells:
        assert cell.methods is not None and cell.methods.total() == cell.matches
    assert report.cells[0].methods is not None and report.cells[0].methods.trimmed == 1


def test_sketch_vector_rebuilds_from_the_listed_urls() -> None:
    vector = _load(VECTOR_SKETCH_PATH)
    federation_key = bytes.fromhex(vector["federation_key_hex"])
    report = Report.from_payload(vector["payload_utf8"].encode())
    modes = set()
    for entry in vector["sketch_inputs"]:
        cell = report.cells[entry["cell_index"]]
        items = [
            hmac.new(federation_key, url.encode("utf-8"), hashlib.sha256).hexdigest()
            for url in entry["urls"]
        ]
        assert items == entry["items"] and len(set(items)) == cell.distinct
        rebuilt = hll_sketch(12, tgt_hll_type.HLL_8)
        for item in items:
            rebuilt.update(item)
        # Same items in the same order: the same bytes.
        assert base64.b64encode(rebuilt.serialize_compact()).decode() == cell.sketch
        stored = hll_sketch.deserialize(base64.b64decode(cell.sketch or ""))
        assert stored.get_lower_bound(3) <= cell.distinct <= stored.get_upper_bound(3)
        assert stored.get_estimate() == entry["estimate"]
        # Reversed order: the bytes may differ, the bounds still hold the distinct count.
        reverse = hll_sketch(12, tgt_hll_type.HLL_8)
        for item in reversed(items):
            reverse.update(item)
        assert reverse.get_lower_bound(3) <= cell.distinct <= reverse.get_upper_bound(3)
        modes.add(base64.b64decode(cell.sketch or "")[0])  # preamble ints: 2 list, 3 set, 10 hll
    assert modes == {2, 3, 10}  # the three serialised forms all occur


def test_rotation_vector_verifies() -> None:
    vector = _load(KEY_ROTATION_PATH)
    current, new = _signer(vector["current_seed_hex"]), _signer(vector["new_seed_hex"])
    payload = vector["payload_utf8"].encode()
    rotation = KeyRotation.model_validate(json.loads(payload))
    assert rotation.to_payload() == payload
    assert rotation.current_key_id == key_id(current) == vector["current_key_id"]
    assert decode_public_key(rotation.new_public_key) == new
    body = json.loads(vector["request_canonical"])
    _, signed = verify(
        parse_envelope(body["announcement"]), KEY_ROTATION_PAYLOAD_TYPE, lambda _k: current
    )
    _, proved = verify(parse_envelope(body["proof"]), KEY_ROTATION_PAYLOAD_TYPE, lambda _k: new)
    assert signed == proved == payload
    assert vector["response"]["body"]["key_id"] == key_id(new)


def test_batch_vector_holds_the_two_report_vectors() -> None:
    batch = _load(BATCH_PATH)
    envelopes = json.loads(batch["request_canonical"])["envelopes"]
    assert envelopes == [_load(VECTOR_PATH)["envelope"], _load(VECTOR_REMOVALS_PATH)["envelope"]]
    results = batch["response"]["body"]["results"]
    assert [r["index"] for r in results] == [0, 1]
    assert {r["status"] for r in results} == {"accepted"}


def test_enroll_vector_keys_come_from_the_seeds() -> None:
    vector = _load(ENROLL_PATH)
    request = json.loads(vector["request_canonical"])
    assert decode_public_key(request["ed25519_public_key"]) == _signer(vector["ed25519_seed_hex"])
    public, _secret = crypto_box_seed_keypair(bytes.fromhex(vector["x25519_seed_hex"]))
    assert base64.b64decode(request["x25519_public_key"]) == public


def test_federation_key_vector_opens_with_libsodium() -> None:
    vector = _load(FEDERATION_KEY_PATH)
    _public, secret = crypto_box_seed_keypair(bytes.fromhex(vector["recipient_x25519_seed_hex"]))
    sealed = base64.b64decode(vector["sealed_key_b64"])
    # A standard sealed box: libsodium's crypto_box_seal_open opens it.
    assert SealedBox(PrivateKey(secret)).decrypt(sealed).hex() == vector["federation_key_hex"]
    assert len(sealed) == 32 + 48  # SealedBox overhead on a 32-byte key
    assert json.loads(vector["post_request_canonical"])["sealed_key"] == vector["sealed_key_b64"]
