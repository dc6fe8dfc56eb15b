"""What one leaf of the LIBRA transparency log holds: a small canonical JSON of digests only.

A leaf never carries a hash value, image, URL or count: only ids and SHA-256 digests, so the log
can be public. Leaf data is RFC 8785 canonical JSON (protocol.canonical), so a node can rebuild
the exact bytes of the leaf for every report it sent and ask for its inclusion proof.

* report:   ``{"kind":"report","node_id":...,"payload_sha256":<hex>,"report_id":...}``, the
  digest being SHA-256 of the DSSE payload bytes the node signed.
* snapshot: ``{"kind":"snapshot","payload_sha256":<hex>}``, SHA-256 of the signed picture's
  DSSE payload (what ``libra coordinator snapshot verify`` checks).
"""

from __future__ import annotations

import hashlib
import re

from .canonical import canonical_json
from .tlog import leaf_hash

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _digest(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise ValueError("payload_sha256 must be 64 lowercase hex characters")
    return value


def payload_sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def report_leaf(node_id: str, report_id: str, payload_digest: str) -> bytes:
    """Leaf data for one accepted report."""
    if not node_id or not report_id:
        raise ValueError("node_id and report_id must be non-empty")
    return canonical_json(
        {
            "kind": "report",
            "node_id": node_id,
            "payload_sha256": _digest(payload_digest),
            "report_id": report_id,
        }
    )


def snapshot_leaf(payload_digest: str) -> bytes:
    """Leaf data for one signed picture snapshot."""
    return canonical_json({"kind": "snapshot", "payload_sha256": _digest(payload_digest)})


def report_leaf_hash(node_id: str, report_id: str, payload_digest: str) -> bytes:
    return leaf_hash(report_leaf(node_id, report_id, payload_digest))
