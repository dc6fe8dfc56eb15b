"""protocol/vectors/tlog-v1.json is what the code generates, and checks out with the independent
RFC 9162 reading (rfc9162_reference.py) and plain Ed25519, from the file alone."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from protocol.testvector import render
from protocol.testvector_tlog import TLOG_VECTOR_PATH, build_tlog_vector
from tests.protocol import rfc9162_reference as ref


def _file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TLOG_VECTOR_PATH.read_text(encoding="utf-8"))
    return data


def _d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_file_equals_generated() -> None:
    assert TLOG_VECTOR_PATH.read_text(encoding="utf-8") == render(build_tlog_vector())


def test_merkle_values_agree_with_the_reference() -> None:
    vec = _file()
    data = [leaf["data"].encode("utf-8") for leaf in vec["leaves"]]
    for leaf, d in zip(vec["leaves"], data, strict=True):
        assert _d(leaf["leaf_hash"]) == hashlib.sha256(b"\x00" + d).digest()
    for entry in vec["roots"]:
        assert _d(entry["root"]) == ref.mth(data[: entry["size"]])
    assert _d(vec["empty_root"]) == ref.mth([])
    for case in vec["inclusion"]:
        i, n, proof = case["index"], case["size"], [_d(p) for p in case["proof"]]
        assert proof == ref.path(i, data[:n])
        leaf = _d(vec["leaves"][i]["leaf_hash"])
        assert ref.verify_inclusion(i, n, leaf, proof, ref.mth(data[:n]))
    for case in vec["consistency"]:
        m, n, proof = case["first"], case["second"], [_d(p) for p in case["proof"]]
        if m == n:
            assert proof == []
            continue
        assert proof == ref.proof(m, data[:n])
        assert ref.verify_consistency(m, n, ref.mth(data[:m]), ref.mth(data[:n]), proof)


def test_signatures_verify_from_the_file_alone() -> None:
    vec = _file()
    body: str = vec["checkpoint_body"]
    origin, size, root = body.rstrip("\n").split("\n")
    assert int(size) == len(vec["leaves"])
    assert _d(root) == _d(vec["roots"][-1]["root"])
    log_pub = _d(vec["log_key"]["public_key"])
    assert bytes(SigningKey(bytes.fromhex(vec["log_key"]["seed_hex"])).verify_key) == log_pub
    text, sigs = vec["cosigned_checkpoint"].split("\n\n")
    assert text + "\n" == body
    log_line, witness_line = sigs.rstrip("\n").split("\n")
    # Log signature: em dash, name, base64(key id || Ed25519 over the body).
    prefix = f"\u2014 {origin} "
    assert log_line.startswith(prefix)
    blob = _d(log_line[len(prefix) :])
    assert blob[:4] == hashlib.sha256(origin.encode() + b"\n\x01" + log_pub).digest()[:4]
    VerifyKey(log_pub).verify(body.encode(), blob[4:])
    # Cosignature: base64(key id || u64 timestamp || Ed25519 over the cosigned message).
    name = vec["witness_key"]["name"]
    w_pub = _d(vec["witness_key"]["public_key"])
    blob = _d(witness_line[len(f"\u2014 {name} ") :])
    assert blob[:4] == hashlib.sha256(name.encode() + b"\n\x04" + w_pub).digest()[:4]
    ts = int.from_bytes(blob[4:12], "big")
    assert ts == vec["cosignature_timestamp"]
    VerifyKey(w_pub).verify(f"cosignature/v1\ntime {ts}\n{body}".encode(), blob[12:])
