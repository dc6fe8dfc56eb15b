"""The PSI-cardinality vector protocol/vectors/psi-v1.json (docs/protocol.md).

Deterministic: two fixed Ed25519 node seeds (from which each node's openmined-psi keys are
derived, protocol.psi.derive_key), two tiny benign sets, a fixed session id and time. The file
holds the signed offer and consent, all six step messages of a session (each node's request,
setup and response) as the DSSE envelopes the relay carries, and the cardinality each node
computes. openmined-psi is deterministic under fixed keys (its response is sorted, the GCS
has no randomness), so tests/protocol/test_psi_vector.py rebuilds the file byte for byte.

Regenerate: ``python -m protocol.testvector_psi``.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .keys import NodeKey
from .psi import (
    FPR,
    PsiConsent,
    PsiMessage,
    PsiOffer,
    PsiStep,
    cardinality,
    client_request,
    derive_key,
    request_size,
    server_answer,
    sign_message,
)
from .testvector import render

PSI_VECTOR_PATH = Path(__file__).with_name("vectors") / "psi-v1.json"
SEEDS_HEX = {"node-a": "a1" * 32, "node-b": "b2" * 32}
SESSION_ID = "0123456789abcdef0123456789abcdef"
CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRES_AT = datetime(2026, 1, 2, tzinfo=UTC)
FAMILY = "sha256"


def _value(label: str) -> str:
    """A benign SHA-256 value: the digest of a short label, nothing else."""
    return hashlib.sha256(label.encode("ascii")).hexdigest()


def vector_sets() -> dict[str, list[str]]:
    """node-a: 5 values, node-b: 4 values, 2 of them shared."""
    common = [_value(f"libra psi vector common {i}") for i in range(2)]
    return {
        "node-a": sorted(common + [_value(f"libra psi vector a {i}") for i in range(3)]),
        "node-b": sorted(common + [_value(f"libra psi vector b {i}") for i in range(2)]),
    }


def _key(node: str) -> NodeKey:
    return NodeKey.from_seed_b64(base64.b64encode(bytes.fromhex(SEEDS_HEX[node])).decode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_psi_vector() -> dict[str, Any]:
    sets = vector_sets()
    keys = {node: _key(node) for node in SEEDS_HEX}
    psi_keys = {
        (node, role): derive_key(keys[node].signing_key.encode(), SESSION_ID, role)
        for node in SEEDS_HEX
        for role in ("client", "server")
    }
    bodies: dict[tuple[str, str], bytes] = {}
    for node in SEEDS_HEX:
        bodies[(node, "request")] = client_request(psi_keys[(node, "client")], sets[node])
    for node, peer in (("node-a", "node-b"), ("node-b", "node-a")):
        setup, response = server_answer(
            psi_keys[(node, "server")], sets[node], bodies[(peer, "request")]
        )
        bodies[(node, "setup")], bodies[(node, "response")] = setup, response
    offer = PsiOffer(
        session_id=SESSION_ID,
        initiator="node-a",
        responder="node-b",
        family=FAMILY,
        created_at=CREATED_AT,
        expires_at=EXPIRES_AT,
    )
    consent = PsiConsent(
        session_id=SESSION_ID, node_id="node-b", decision="accept", created_at=CREATED_AT
    )
    steps: list[PsiStep] = ["request", "setup", "response"]
    messages = [
        {
            "sender": node,
            "step": step,
            "envelope": sign_message(
                PsiMessage(
                    session_id=SESSION_ID,
                    sender=node,
                    step=step,
                    created_at=CREATED_AT,
                    body=_b64(bodies[(node, step)]),
                ),
                keys[node],
            ).to_json(),
        }
        for node in SEEDS_HEX
        for step in steps
    ]
    results = {
        node: {
            "own_size": request_size(bodies[(node, "request")]),
            "peer_size": request_size(bodies[(peer, "request")]),
            "cardinality": cardinality(
                psi_keys[(node, "client")], bodies[(peer, "setup")], bodies[(peer, "response")]
            ),
        }
        for node, peer in (("node-a", "node-b"), ("node-b", "node-a"))
    }
    return {
        "description": "PSI-cardinality between node-a and node-b (protocol/psi.py): openmined-"
        "psi keys derived from each node's Ed25519 seed, both directions of one session, "
        "as relayed by the coordinator. Test values are SHA-256 digests of short labels.",
        "family": FAMILY,
        "fpr": FPR,
        "session_id": SESSION_ID,
        "nodes": {
            node: {
                "ed25519_seed_hex": SEEDS_HEX[node],
                "public_key": keys[node].public_key_b64,
                "key_id": keys[node].key_id,
                "psi_client_key_hex": psi_keys[(node, "client")].hex(),
                "psi_server_key_hex": psi_keys[(node, "server")].hex(),
                "set": sets[node],
            }
            for node in SEEDS_HEX
        },
        "offer": sign_message(offer, keys["node-a"]).to_json(),
        "consent": sign_message(consent, keys["node-b"]).to_json(),
        "messages": messages,
        "results": results,
    }


def main() -> None:
    PSI_VECTOR_PATH.write_text(render(build_psi_vector()), encoding="utf-8")
    print(f"wrote {PSI_VECTOR_PATH}")


if __name__ == "__main__":
    main()
