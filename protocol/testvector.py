"""The documented protocol test vector: a fixed key, a fixed report, its exact envelope.

Ed25519 is deterministic, so anyone implementing the protocol can reproduce these bytes.
The seed is public test material, never used for a real node.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from .dsse import pae, sign
from .hashes import HashFamily
from .keys import NodeKey
from .models import (
    AttributionSource,
    Denominators,
    HosterRemovals,
    Period,
    Report,
    ReportCell,
)

VECTOR_SEED_HEX = "4c49425241207465737420766563746f72206b6579202d206e6f742073656372"
VECTOR_PATH = Path(__file__).with_name("vectors") / "report-v1.json"
# The same report with the optional members (attribution sources, removal statistics).
VECTOR_REMOVALS_PATH = Path(__file__).with_name("vectors") / "report-v1-removals.json"
# Seconds to removal behind the vector's KLL sketch (k = 200; exact for so few items).
VECTOR_REMOVAL_SECONDS = (3600.0, 86400.0, 200000.0)


def vector_key() -> NodeKey:
    import base64

    return NodeKey.from_seed_b64(base64.b64encode(bytes.fromhex(VECTOR_SEED_HEX)).decode())


def vector_report() -> Report:
    key = vector_key()
    return Report(
        protocol_version=PROTOCOL_VERSION,
        report_id="0123456789abcdef0123456789abcdef",
        node_id="node-example",
        key_id=key.key_id,
        sequence=1,
        created_at=datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC),
        period=Period(
            start=datetime(2026, 11, 23, tzinfo=UTC), end=datetime(2026, 11, 24, tzinfo=UTC)
        ),
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

    ``removal_sketch`` is passed in because building it needs datasketches, which this
    package does not depend on; the stored vector records the exact base64.
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


def _kll_sketch(seconds: tuple[float, ...]) -> str:
    import base64

    from datasketches import kll_floats_sketch

    sketch = kll_floats_sketch(200)
    for value in seconds:
        sketch.update(value)
    return base64.b64encode(sketch.serialize()).decode()


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
    }


def build_removals_vector() -> dict[str, Any]:
    vector = build_vector(vector_report_with_removals(_kll_sketch(VECTOR_REMOVAL_SECONDS)))
    vector["removal_seconds"] = list(VECTOR_REMOVAL_SECONDS)
    return vector


if __name__ == "__main__":  # regenerate: python -m protocol.testvector
    VECTOR_PATH.write_text(json.dumps(build_vector(), indent=2) + "\n", encoding="utf-8")
    VECTOR_REMOVALS_PATH.write_text(
        json.dumps(build_removals_vector(), indent=2) + "\n", encoding="utf-8"
    )
    print(VECTOR_PATH, VECTOR_REMOVALS_PATH)
