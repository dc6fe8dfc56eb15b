"""protocol/vectors/psi-v1.json is what the code generates, and checks out from the file alone:
every envelope verifies with its node's key, every step decodes, the stated keys derive from
the seeds, and each node's client gets the stated cardinality from the peer's messages."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from nacl.signing import SigningKey

from protocol.keys import NodeKey, decode_public_key
from protocol.psi import (
    PsiConsent,
    PsiMessage,
    PsiOffer,
    cardinality,
    derive_key,
    open_message,
    request_size,
)
from protocol.testvector import render
from protocol.testvector_psi import PSI_VECTOR_PATH, build_psi_vector


def _file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PSI_VECTOR_PATH.read_text(encoding="utf-8"))
    return data


def test_file_equals_generated() -> None:
    # openmined-psi is deterministic under fixed keys: the same bytes on every run.
    assert PSI_VECTOR_PATH.read_text(encoding="utf-8") == render(build_psi_vector())


def test_the_vector_checks_out_from_the_file_alone() -> None:
    vec = _file()
    nodes = vec["nodes"]
    for node in nodes.values():
        seed = bytes.fromhex(node["ed25519_seed_hex"])
        public = bytes(SigningKey(seed).verify_key)
        assert base64.b64encode(public).decode() == node["public_key"]
        assert hashlib.sha256(public).hexdigest() == node["key_id"]
        for role in ("client", "server"):
            assert derive_key(seed, vec["session_id"], role).hex() == node[f"psi_{role}_key_hex"]

    def resolve(keyid: str) -> Any:
        (node,) = [n for n in nodes.values() if n["key_id"] == keyid]
        return decode_public_key(node["public_key"])

    offer, _, _ = open_message(vec["offer"], PsiOffer, resolve)
    consent, _, _ = open_message(vec["consent"], PsiConsent, resolve)
    assert (offer.initiator, offer.responder, offer.family) == ("node-a", "node-b", vec["family"])
    assert (consent.node_id, consent.decision) == ("node-b", "accept")
    bodies: dict[tuple[str, str], bytes] = {}
    for item in vec["messages"]:
        message, keyid, _ = open_message(item["envelope"], PsiMessage, resolve)
        assert nodes[message.sender]["key_id"] == keyid
        assert (message.sender, message.step) == (item["sender"], item["step"])
        bodies[(message.sender, message.step)] = message.body_bytes()
    assert len(bodies) == 6
    common = set(nodes["node-a"]["set"]) & set(nodes["node-b"]["set"])
    for me, peer in (("node-a", "node-b"), ("node-b", "node-a")):
        stated = vec["results"][me]
        client_key = bytes.fromhex(nodes[me]["psi_client_key_hex"])
        got = cardinality(client_key, bodies[(peer, "setup")], bodies[(peer, "response")])
        assert got == stated["cardinality"] == len(common) == 2
        assert request_size(bodies[(me, "request")]) == stated["own_size"] == len(nodes[me]["set"])
        assert stated["peer_size"] == len(nodes[peer]["set"])


def test_no_set_value_is_in_any_message() -> None:
    vec = _file()
    values = [v for node in vec["nodes"].values() for v in node["set"]]
    for item in vec["messages"]:
        body = base64.b64decode(json.loads(base64.b64decode(item["envelope"]["payload"]))["body"])
        for value in values:
            assert bytes.fromhex(value) not in body and value.encode() not in body


def test_derived_keys_are_distinct_and_in_range() -> None:
    key = NodeKey.generate()
    seed = key.signing_key.encode()
    keys = {
        derive_key(seed, session, role)
        for session in ("00" * 16, "11" * 16)
        for role in ("client", "server")
    }
    assert len(keys) == 4 and all(len(k) == 32 and int.from_bytes(k, "big") > 0 for k in keys)
