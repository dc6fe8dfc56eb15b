"""The documented protocol test vectors: fixed keys, fixed messages, their exact bytes.

Ed25519 is deterministic, so anyone implementing the protocol can reproduce these bytes.
Every seed is public test material, never used for a real node. Regenerate all files with
``python -m protocol.testvector_files`` (which gathers this module's vectors and those of
testvector_coverage and testvector_negative); tests/protocol/test_vector*.py check that the
files equal what these modules build, and verify each one from the file alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_box_seed_keypair
from nacl.encoding import RawEncoder
from nacl.hash import blake2b
from nacl.public import Box, PrivateKey, PublicKey

from . import KEY_ROTATION_PAYLOAD_TYPE, PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from .canonical import canonical_json
from .dsse import pae, sign
from .hashes import HashFamily
from .keys import NodeKey
from .models import (
    AttributionSource,
    Denominators,
    HosterRemovals,
    KeyRotation,
    MatchMethods,
    Period,
    Report,
    ReportCell,
)

VECTORS_DIR = Path(__file__).with_name("vectors")
NEGATIVE_DIR = VECTORS_DIR / "negative"
VECTOR_SEED_HEX = "4c49425241207465737420766563746f72206b6579202d206e6f742073656372"
VECTOR_PATH = VECTORS_DIR / "report-v1.json"
# The same report with the optional members (attribution sources, removal statistics).
VECTOR_REMOVALS_PATH = VECTORS_DIR / "report-v1-removals.json"
# A report whose cells carry HLL sketches, with the items that went into them.
VECTOR_SKETCH_PATH = VECTORS_DIR / "report-v1-sketch.json"
# A report whose cells count their matches by how they were found (the optional `methods`).
VECTOR_METHODS_PATH = VECTORS_DIR / "report-v1-methods.json"
# Cells with Theta sketches and the report's per-hoster coverage (issue 16).
VECTOR_COVERAGE_PATH = VECTORS_DIR / "report-v1-coverage.json"
KEY_ROTATION_PATH = VECTORS_DIR / "key-rotation-v1.json"
BATCH_PATH = VECTORS_DIR / "batch-v1.json"
ENROLL_PATH = VECTORS_DIR / "enroll-v1.json"
FEDERATION_KEY_PATH = VECTORS_DIR / "federation-key-v1.json"
# Seconds to removal behind the vector's KLL sketch (k = 200; exact for so few items).
VECTOR_REMOVAL_SECONDS = (3600.0, 86400.0, 200000.0)
# "now" of every vector: the created_at of the reports and of the rotation request.
VECTOR_NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
VECTOR_NODE_ID = "node-example"
HLL_LG_K = 12


def _seed(label: str) -> str:
    """A 32-byte seed as hex, derived from a public label (so it is visibly not a secret)."""
    return hashlib.sha256(f"LIBRA test vector: {label}".encode()).hexdigest()


# Key roles shared by the vectors and the conformance checker.
NEW_KEY_SEED_HEX = _seed("rotation new key")  # the key a rotation introduces
OTHER_KEY_SEED_HEX = _seed("unregistered key")  # registered nowhere
X25519_SEED_HEX = _seed("x25519 node key")  # the node's relay key pair (enrolment)
EPHEMERAL_SEED_HEX = _seed("sealed box ephemeral key")
FEDERATION_KEY_HEX = _seed("federation key")  # shared among nodes, never the coordinator's


def key_from_hex(seed_hex: str) -> NodeKey:
    return NodeKey.from_seed_b64(base64.b64encode(bytes.fromhex(seed_hex)).decode())


def vector_key() -> NodeKey:
    return key_from_hex(VECTOR_SEED_HEX)


def vector_keys() -> dict[str, NodeKey]:
    """The signing keys by role: ``current`` (the node's), ``new`` (rotation), ``other``."""
    return {
        "current": vector_key(),
        "new": key_from_hex(NEW_KEY_SEED_HEX),
        "other": key_from_hex(OTHER_KEY_SEED_HEX),
    }


def _period() -> Period:
    return Period(start=datetime(2026, 11, 23, tzinfo=UTC), end=datetime(2026, 11, 24, tzinfo=UTC))


def vector_report() -> Report:
    key = vector_key()
    return Report(
        protocol_version=PROTOCOL_VERSION,
        report_id="0123456789abcdef0123456789abcdef",
        node_id=VECTOR_NODE_ID,
        key_id=key.key_id,
        sequence=1,
        created_at=VECTOR_NOW,
        period=_period(),
        cells=[
            ReportCell(
                country="DE",
                asn=64501,
                hoster="Hoster A Ltd",
                hash_family=HashFamily.PDQ,
                matches=3,
                distinct=2,
            ),
            ReportCell(
                country="ZZ",
                asn=0,
                hoster="unknown",
                hash_family=HashFamily.MD5,
                matches=1,
                distinct=1,
            ),
        ],
        denominators=Denominators(pages_fetched=60, images_hashed=410, hosts_seen=14),
    )


def vector_report_with_removals(removal_sketch: str) -> Report:
    """The vector report plus attribution sources and one hoster's removal statistics.

    ``removal_sketch`` is passed in because building it needs datasketches; the stored
    vector records the exact base64.
    """
    return vector_report().model_copy(
        update={
            "report_id": "fedcba9876543210fedcba9876543210",
            "sequence": 2,
            "attribution_sources": [
                AttributionSource(name="GeoLite2-Country", version="2026-11-20T00:00:00Z"),
                AttributionSource(name="GeoLite2-ASN", version="2026-11-20T00:00:00Z"),
            ],
            "removals": [
                HosterRemovals(
                    country="DE",
                    asn=64501,
                    hoster="Hoster A Ltd",
                    notices_sent=4,
                    urls_noticed=3,
                    removed=3,
                    removed_within_24h=2,
                    removed_within_72h=3,
                    median_seconds=86400,
                    p90_seconds=200000,
                    removal_sketch=removal_sketch,
                )
            ],
        }
    )


def vector_report_with_methods() -> Report:
    """The vector report with each cell's matches broken down by method (issue 18)."""
    report = vector_report()
    pdq, md5 = report.cells
    return report.model_copy(
        update={
            "report_id": "0f1e2d3c4b5a69780f1e2d3c4b5a6978",
            "sequence": 4,
            "cells": [
                pdq.model_copy(
                    update={"methods": MatchMethods(direct=1, dihedral=1, trimmed=1, region=0)}
                ),
                md5.model_copy(
                    update={"methods": MatchMethods(direct=1, dihedral=0, trimmed=0, region=0)}
                ),
            ],
        }
    )


def _kll_sketch(seconds: tuple[float, ...]) -> str:
    from datasketches import kll_floats_sketch

    sketch = kll_floats_sketch(200)
    for value in seconds:
        sketch.update(value)
    return base64.b64encode(sketch.serialize()).decode()


# --------------------------------------------------------------------------- HLL sketches

# (cell, number of distinct URLs): 3 keeps the sketch in its LIST mode, 300 in SET mode and
# 1000 in HLL mode (the three serialised forms a receiver must decode).
SKETCH_CELLS = (
    ("DE", 64501, "Hoster A Ltd", HashFamily.PDQ, 5, 3),
    ("NL", 64502, "Hoster B BV", HashFamily.SHA256, 300, 300),
    ("US", 64503, "Hoster C Inc", HashFamily.MD5, 1200, 1000),
)


def sketch_urls(country: str, count: int) -> list[str]:
    return [f"https://img{i}.{country.lower()}.example.net/{i:04d}.jpg" for i in range(count)]


def hll_item(federation_key: bytes, url: str) -> str:
    """What a node puts into a sketch for one distinct final URL (docs/protocol.md §3)."""
    return hmac.new(federation_key, url.encode("utf-8"), hashlib.sha256).hexdigest()


def hll_sketch_b64(items: list[str]) -> str:
    from datasketches import hll_sketch, tgt_hll_type

    sketch = hll_sketch(HLL_LG_K, tgt_hll_type.HLL_8)
    for item in items:  # the order matters for the bytes, not for the estimate's bounds
        sketch.update(item)
    return base64.b64encode(sketch.serialize_compact()).decode()


def vector_report_with_sketches() -> tuple[Report, list[dict[str, Any]]]:
    federation_key = bytes.fromhex(FEDERATION_KEY_HEX)
    cells: list[ReportCell] = []
    inputs: list[dict[str, Any]] = []
    for index, (country, asn, hoster, family, matches, distinct) in enumerate(SKETCH_CELLS):
        urls = sketch_urls(country, distinct)
        items = [hll_item(federation_key, url) for url in urls]
        cells.append(
            ReportCell(
                country=country,
                asn=asn,
                hoster=hoster,
                hash_family=family,
                matches=matches,
                distinct=distinct,
                sketch=hll_sketch_b64(items),
            )
        )
        inputs.append({"cell_index": index, "urls": urls, "items": items})
    report = vector_report().model_copy(
        update={"report_id": "00112233445566778899aabbccddeeff", "sequence": 3, "cells": cells}
    )
    return report, inputs


# --------------------------------------------------------------------------- envelopes


def envelope_bytes(payload: bytes, payload_type: str, key: NodeKey) -> bytes:
    """The envelope as it travels: RFC 8785 canonical JSON (docs/protocol.md §2)."""
    return canonical_json(sign(payload, payload_type, key).to_json())


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"http_status": status, "body": body}


def build_vector(report: Report | None = None) -> dict[str, Any]:
    key = vector_key()
    report = report if report is not None else vector_report()
    payload = report.to_payload()
    envelope = sign(payload, REPORT_PAYLOAD_TYPE, key)
    return {
        "description": (
            "LIBRA report test vector (protocol version 1); the seed is public test data"
        ),
        "ed25519_seed_hex": VECTOR_SEED_HEX,
        "public_key_b64": key.public_key_b64,
        "key_id": key.key_id,
        "payload_type": REPORT_PAYLOAD_TYPE,
        "payload_utf8": payload.decode("utf-8"),
        "pae_hex": pae(REPORT_PAYLOAD_TYPE, payload).hex(),
        "envelope": envelope.to_json(),
        # The exact request body of POST /v1/reports (Content-Type: application/json).
        "envelope_canonical": envelope_bytes(payload, REPORT_PAYLOAD_TYPE, key).decode(),
        "response": _response(200, {"report_id": report.report_id, "status": "accepted"}),
    }


def build_removals_vector() -> dict[str, Any]:
    vector = build_vector(vector_report_with_removals(_kll_sketch(VECTOR_REMOVAL_SECONDS)))
    vector["removal_seconds"] = list(VECTOR_REMOVAL_SECONDS)
    return vector


def build_sketch_vector() -> dict[str, Any]:
    from datasketches import hll_sketch

    report, inputs = vector_report_with_sketches()
    vector = build_vector(report)
    for entry, cell in zip(inputs, report.cells, strict=True):
        sketch = hll_sketch.deserialize(base64.b64decode(cell.sketch or ""))
        entry["estimate"] = sketch.get_estimate()
        entry["lower_bound_3"] = sketch.get_lower_bound(3)
        entry["upper_bound_3"] = sketch.get_upper_bound(3)
    vector["federation_key_hex"] = FEDERATION_KEY_HEX
    vector["sketch_inputs"] = inputs
    vector["sketch_note"] = (
        "item = lowercase hex of HMAC-SHA256(federation key, UTF-8 final URL), given to the "
        "DataSketches HLL (lg_k 12, HLL_8) as a string in the listed order; the payload "
        "carries the compact serialisation. The bytes depend on insertion order; the "
        "estimate's 3-sigma bounds contain the number of distinct items in any order."
    )
    return vector


def rotation_payload() -> bytes:
    keys = vector_keys()
    return KeyRotation(
        node_id=VECTOR_NODE_ID,
        current_key_id=keys["current"].key_id,
        new_public_key=keys["new"].public_key_b64,
        created_at=VECTOR_NOW,
        overlap_seconds=86_400,
    ).to_payload()


def build_rotation_vector() -> dict[str, Any]:
    keys = vector_keys()
    payload = rotation_payload()
    announcement = sign(payload, KEY_ROTATION_PAYLOAD_TYPE, keys["current"]).to_json()
    proof = sign(payload, KEY_ROTATION_PAYLOAD_TYPE, keys["new"]).to_json()
    return {
        "description": "A node rotates its signing key: POST /v1/keys/rotate (no token)",
        "current_seed_hex": VECTOR_SEED_HEX,
        "current_key_id": keys["current"].key_id,
        "new_seed_hex": NEW_KEY_SEED_HEX,
        "new_public_key_b64": keys["new"].public_key_b64,
        "new_key_id": keys["new"].key_id,
        "payload_type": KEY_ROTATION_PAYLOAD_TYPE,
        "payload_utf8": payload.decode(),
        "pae_hex": pae(KEY_ROTATION_PAYLOAD_TYPE, payload).hex(),
        "announcement": announcement,
        "proof": proof,
        "request_canonical": canonical_json(
            {"announcement": announcement, "proof": proof}
        ).decode(),
        # With the coordinator's default key_overlap (7 days) the asked 1 day applies.
        "response": _response(
            200,
            {
                "node_id": VECTOR_NODE_ID,
                "key_id": keys["new"].key_id,
                "status": "rotated",
                "previous_valid_until": (VECTOR_NOW + timedelta(days=1)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
        ),
        "response_on_repeat": "the same body with status 'unchanged'",
    }


def build_batch_vector() -> dict[str, Any]:
    key = vector_key()
    reports = [
        vector_report(),
        vector_report_with_removals(_kll_sketch(VECTOR_REMOVAL_SECONDS)),
    ]
    envelopes = [sign(r.to_payload(), REPORT_PAYLOAD_TYPE, key).to_json() for r in reports]
    return {
        "description": (
            "POST /v1/reports/batch with the envelopes of report-v1 and report-v1-removals, "
            "answered for a coordinator that holds neither yet"
        ),
        "ed25519_seed_hex": VECTOR_SEED_HEX,
        "request_canonical": canonical_json({"envelopes": envelopes}).decode(),
        "response": _response(
            200,
            {
                "results": [
                    {
                        "index": index,
                        "http_status": 200,
                        "report_id": report.report_id,
                        "status": "accepted",
                        "error": None,
                        "retry_after": None,
                    }
                    for index, report in enumerate(reports)
                ]
            },
        ),
        "error_item_example": {
            "index": 0,
            "http_status": 422,
            "report_id": None,
            "status": None,
            "error": {"code": "malformed_payload", "message": "(human-readable)"},
            "retry_after": None,
        },
    }


def x25519_key() -> PrivateKey:
    _public, secret = crypto_box_seed_keypair(bytes.fromhex(X25519_SEED_HEX))
    return PrivateKey(secret)


def build_enroll_vector() -> dict[str, Any]:
    request = {
        "invitation": "inv_0123456789abcdef_" + "A" * 43,
        "node_id": VECTOR_NODE_ID,
        "country": "DE",
        "operator": "Example Agency, hotline@example.org",
        "ed25519_public_key": vector_key().public_key_b64,
        "x25519_public_key": base64.b64encode(bytes(x25519_key().public_key)).decode(),
    }
    return {
        "description": "POST /v1/enroll: a new node joins with an invitation code (no token)",
        "ed25519_seed_hex": VECTOR_SEED_HEX,
        "x25519_seed_hex": X25519_SEED_HEX,
        "request_canonical": canonical_json(request).decode(),
        "response": _response(
            200,
            {
                "node_id": VECTOR_NODE_ID,
                "key_id": vector_key().key_id,
                "status": "pending",
                "node_token": "lbr_<16 hex>_<43 base64url> (shown once)",
                "token_expires_at": "<created + node_token_ttl>",
            },
        ),
    }


def sealed_box(message: bytes, recipient: PublicKey, ephemeral_seed: bytes) -> bytes:
    """libsodium crypto_box_seal with a fixed ephemeral key (real senders use a random one):
    ephemeral public key || crypto_box(message, nonce = BLAKE2b-24(epk || rpk))."""
    epk_raw, esk_raw = crypto_box_seed_keypair(ephemeral_seed)
    nonce = blake2b(epk_raw + bytes(recipient), digest_size=24, encoder=RawEncoder)
    box = Box(PrivateKey(esk_raw), recipient)
    return epk_raw + box.encrypt(message, nonce).ciphertext


def build_federation_key_vector() -> dict[str, Any]:
    recipient = x25519_key().public_key
    sealed = sealed_box(
        bytes.fromhex(FEDERATION_KEY_HEX), recipient, bytes.fromhex(EPHEMERAL_SEED_HEX)
    )
    recipient_b64 = base64.b64encode(bytes(recipient)).decode()
    sealed_b64 = base64.b64encode(sealed).decode()
    return {
        "description": (
            "Federation-key relay: a sponsor seals the 32-byte federation key to a member's "
            "X25519 key (libsodium sealed box) and posts it; the member fetches and opens it"
        ),
        "federation_key_hex": FEDERATION_KEY_HEX,
        "recipient_x25519_seed_hex": X25519_SEED_HEX,
        "recipient_x25519_public_b64": recipient_b64,
        "ephemeral_seed_hex": EPHEMERAL_SEED_HEX,
        "sealed_key_b64": sealed_b64,
        "post_request_canonical": canonical_json(
            {
                "recipient": VECTOR_NODE_ID,
                "recipient_x25519": recipient_b64,
                "sealed_key": sealed_b64,
            }
        ).decode(),
        "post_response": _response(200, {"node_id": VECTOR_NODE_ID, "status": "sealed"}),
        "recipients_response_example": _response(
            200,
            {
                "recipients": [
                    {
                        "node_id": VECTOR_NODE_ID,
                        "country": "DE",
                        "status": "pending",
                        "x25519_public_key": recipient_b64,
                    }
                ]
            },
        ),
        "sealed_list_response_example": _response(
            200,
            {
                "sealed_keys": [
                    {
                        "sponsor": "node-sponsor",
                        "sealed_key": sealed_b64,
                        "created_at": VECTOR_NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                ]
            },
        ),
    }


def render(vector: dict[str, Any]) -> str:
    return json.dumps(vector, indent=2, ensure_ascii=False) + "\n"
