"""Estimation-mode Theta cases for the coordinator conformance run (docs/conformance.md).

A Theta sketch in estimation mode holds 2^15 entries (about 280 KB of base64), too large to
store as a vector for each case; the run builds these reports itself from the recipe of
report-v1-coverage.json's ``estimation_example`` (40 000 keyed URLs), at the vectors' time and
for node-example, and re-binds them like the stored vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .testvector import FEDERATION_KEY_HEX, vector_report
from .testvector_coverage import ESTIMATION_COUNT, ESTIMATION_PATTERN
from .theta import make_theta


@dataclass(frozen=True)
class GeneratedCase:
    name: str
    description: str
    payload: bytes  # for node-example, the vector key and VECTOR_NOW: re-bind before sending
    http_status: int
    code: str  # the error code, or the status ("accepted") of a 200 answer


@cache
def _estimation_sketch() -> str:
    key = bytes.fromhex(FEDERATION_KEY_HEX)
    return make_theta(key, (ESTIMATION_PATTERN.format(i=i) for i in range(ESTIMATION_COUNT)))


def _payload(report_id: str, sequence: int, distinct: int) -> bytes:
    report = vector_report()
    cell = report.cells[0].model_copy(
        update={"matches": 50_000, "distinct": distinct, "url_theta": _estimation_sketch()}
    )
    return report.model_copy(
        update={"report_id": report_id, "sequence": sequence, "cells": [cell]}
    ).to_payload()


def estimation_cases() -> tuple[GeneratedCase, GeneratedCase]:
    """(accepted, refused): the 40 000-member sketch with distinct 40 000 (within the 6-sigma
    bounds, 39 478 .. 40 627) and with distinct 30 000 (far outside)."""
    return (
        GeneratedCase(
            "theta-estimation-within-bounds",
            "url_theta in estimation mode (40 000 members, 32 768 retained), distinct 40 000",
            _payload("e5" * 16, 6, ESTIMATION_COUNT),
            200,
            "accepted",
        ),
        GeneratedCase(
            "theta-estimation-outside-bounds",
            "the same sketch with distinct 30 000: outside its 6-sigma bounds",
            _payload("e6" * 16, 1000, 30_000),
            422,
            "sketch_mismatch",
        ),
    )
