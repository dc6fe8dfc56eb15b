"""The discovery report vector (issue 14): report-v1-discovery.json, and its negative cases.

A report that carries ``discovery`` (docs/protocol.md §3): per hoster, the candidate images first
found in the period and the verdicts analysts gave in it. One row is for a hoster that has no
cell (the new material was found beside known items seen there in an earlier period), one has
verdicts but no new candidates. Sequence 8: the conformance run sends it after the video vector
(sequence 7) on the same node.
"""

from __future__ import annotations

from typing import Any

from .models import HosterDiscovery, Report
from .testvector import VECTORS_DIR, build_vector, vector_report
from .testvector_cases import Builder, Payload, expected, jcs

VECTOR_DISCOVERY_PATH = VECTORS_DIR / "report-v1-discovery.json"
DISCOVERY_SEQUENCE = 8

_DE = {"country": "DE", "asn": 64501, "hoster": "Hoster A Ltd"}
_NL = {"country": "NL", "asn": 64502, "hoster": "Hoster B BV"}
_ZZ = {"country": "ZZ", "asn": 0, "hoster": "unknown"}


def vector_report_with_discovery() -> Report:
    """report-v1's key, period and cells; three discovery rows."""
    return vector_report().model_copy(
        update={
            "report_id": "d15c0fe7d15c0fe7d15c0fe7d15c0f01",
            "sequence": DISCOVERY_SEQUENCE,
            "discovery": [
                HosterDiscovery(**_DE, candidates=12, confirmed=3, rejected=1),
                HosterDiscovery(**_NL, candidates=4, confirmed=0, rejected=0),
                HosterDiscovery(**_ZZ, candidates=0, confirmed=1, rejected=2),
            ],
        }
    )


def build_discovery_vector() -> dict[str, Any]:
    vector = build_vector(vector_report_with_discovery())
    vector["description"] = (
        "LIBRA report test vector with discovery counts (protocol version 1, issue 14); "
        "the seed is public test data"
    )
    return vector


def _discovery(*rows: dict[str, Any]) -> Any:
    def edit(data: Payload) -> None:
        data["discovery"] = list(rows)

    return edit


def discovery_cases(b: Builder) -> None:
    """Negative cases for ``discovery``, appended after every older case (the older cases keep
    their sequences and bytes)."""
    bad = expected(422, "malformed_payload")
    row = {**_DE, "candidates": 2, "confirmed": 1, "rejected": 0}
    for name, description, rows in (
        (
            "discovery-duplicate-row",
            "DE/64501/Hoster A Ltd has two discovery rows",
            (row, {**row, "candidates": 5}),
        ),
        (
            "discovery-negative-count",
            "a discovery row's candidates is -1",
            ({**row, "candidates": -1},),
        ),
        (
            "discovery-bool-count",
            "a discovery row's confirmed is true",
            ({**row, "confirmed": True},),
        ),
        (
            "discovery-unknown-member",
            'a discovery row holds "sha256" (discovery carries counts, never hashes)',
            ({**row, "sha256": "00" * 32},),
        ),
    ):
        b.add(name, description, bad, jcs(b.report(name, _discovery(*rows))))
