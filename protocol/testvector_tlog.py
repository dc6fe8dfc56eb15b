"""The transparency-log vector protocol/vectors/tlog-v1.json (docs/protocol.md).

Deterministic: fixed leaves, a fixed Ed25519 seed for the log and the witness, a fixed timestamp.
Another implementation checks its Merkle hashing, proofs, checkpoint text, signed-note signature
and cosignature against this file; tests/protocol/test_tlog_vector.py rebuilds it byte for byte
and checks it with the independent verifier tests/protocol/rfc9162_reference.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from .keys import key_id
from .tlog import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_list_subtrees,
    root_from_leaf_hashes,
)
from .tlog_leaf import payload_sha256, report_leaf, snapshot_leaf
from .tlog_note import Checkpoint, Note, cosign, sign_note, verifier_key

TLOG_VECTOR_PATH = Path(__file__).with_name("vectors") / "tlog-v1.json"
LOG_SEED_HEX = "11" * 32
WITNESS_SEED_HEX = "22" * 32
WITNESS_NAME = "libra.node/node-a"  # as coordinator/tlog.py names node witnesses
COSIGN_TIME = 1767225600  # 2026-01-01T00:00:00Z
LEAF_COUNT = 7
INCLUSION_CASES = ((0, 1), (0, 7), (3, 7), (6, 7), (4, 5))
CONSISTENCY_CASES = ((1, 7), (3, 7), (4, 7), (4, 4), (2, 5), (6, 7))


def vector_leaves() -> list[bytes]:
    """Six report leaves and one snapshot leaf, digests of fixed payloads."""
    leaves = [
        report_leaf(f"node-{i % 2}", f"report-{i}", payload_sha256(f"payload {i}".encode()))
        for i in range(LEAF_COUNT - 1)
    ]
    leaves.append(snapshot_leaf(payload_sha256(b"picture 0")))
    return leaves


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_tlog_vector() -> dict[str, Any]:
    leaves = vector_leaves()
    hashes = [leaf_hash(d) for d in leaves]
    subtree = leaf_list_subtrees(hashes)
    roots = [root_from_leaf_hashes(hashes[:n]) for n in range(LEAF_COUNT + 1)]
    log_key = SigningKey(bytes.fromhex(LOG_SEED_HEX))
    # The coordinator's origin (= key name): "libra.coordinator/" + 16 hex of its key id.
    log_name = "libra.coordinator/" + key_id(log_key.verify_key)[:16]
    witness_key = SigningKey(bytes.fromhex(WITNESS_SEED_HEX))
    body = Checkpoint(log_name, LEAF_COUNT, roots[LEAF_COUNT]).body()
    note = Note(body, (sign_note(body, log_name, log_key),))
    cosigned = note.with_signature(cosign(body, WITNESS_NAME, witness_key, COSIGN_TIME))
    return {
        "description": "LIBRA transparency log v1: RFC 9162 Merkle tree, C2SP checkpoint, "
        "signed-note (Ed25519, type 0x01) and tlog-cosignature (cosignature/v1, type 0x04). "
        "Hashes are base64, leaf data UTF-8 canonical JSON.",
        "empty_root": _b64(EMPTY_ROOT),
        "leaves": [
            {"data": d.decode("utf-8"), "leaf_hash": _b64(h)}
            for d, h in zip(leaves, hashes, strict=True)
        ],
        "roots": [{"size": n, "root": _b64(r)} for n, r in enumerate(roots)],
        "inclusion": [
            {
                "index": i,
                "size": n,
                "proof": [_b64(p) for p in inclusion_proof(i, n, subtree)],
            }
            for i, n in INCLUSION_CASES
        ],
        "consistency": [
            {
                "first": m,
                "second": n,
                "proof": [_b64(p) for p in consistency_proof(m, n, subtree)],
            }
            for m, n in CONSISTENCY_CASES
        ],
        "log_key": {
            "name": log_name,
            "seed_hex": LOG_SEED_HEX,
            "public_key": _b64(bytes(log_key.verify_key)),
            "vkey": verifier_key(log_name, log_key.verify_key),
        },
        "witness_key": {
            "name": WITNESS_NAME,
            "seed_hex": WITNESS_SEED_HEX,
            "public_key": _b64(bytes(witness_key.verify_key)),
        },
        "cosignature_timestamp": COSIGN_TIME,
        "checkpoint_body": body,
        "signed_checkpoint": note.render(),
        "cosigned_checkpoint": cosigned.render(),
    }
