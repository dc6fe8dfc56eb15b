"""The video-families report vector (issue 13): report-v1-video.json.

A report whose cells use the report-only families (docs/protocol.md §3): a listed video file's
MD5 matched the fetched video's bytes (``video-md5``), a fetched video matched a listed video
under vPDQ (``vpdq``), and a fetched image matched a frame of a listed video (``vpdq-frame``),
next to an ordinary image cell. Sequence 7: the conformance run sends it after the generated
estimation report (sequence 6) on the same node.
"""

from __future__ import annotations

from typing import Any

from .hashes import ReportFamily
from .models import MatchMethods, Report, ReportCell
from .testvector import VECTORS_DIR, build_vector, vector_report
from .testvector_cases import Builder, expected, jcs, set_cell

VECTOR_VIDEO_PATH = VECTORS_DIR / "report-v1-video.json"
VIDEO_SEQUENCE = 7

_DE = {"country": "DE", "asn": 64501, "hoster": "Hoster A Ltd"}
_NL = {"country": "NL", "asn": 64502, "hoster": "Hoster B BV"}


def vector_report_with_video() -> Report:
    """report-v1's key and period; one image cell and three video-family cells."""
    return vector_report().model_copy(
        update={
            "report_id": "7a1de0f00d7a1de0f00d7a1de0f00d01",
            "sequence": VIDEO_SEQUENCE,
            "cells": [
                ReportCell(**_DE, hash_family=ReportFamily.PDQ, matches=2, distinct=2),
                ReportCell(**_DE, hash_family=ReportFamily.VIDEO_MD5, matches=3, distinct=2),
                ReportCell(
                    **_DE,
                    hash_family=ReportFamily.VPDQ_FRAME,
                    matches=1,
                    distinct=1,
                    # A still matched as the listed frame was: direct (methods as for images).
                    methods=MatchMethods(direct=1, dihedral=0, trimmed=0, region=0),
                ),
                ReportCell(**_NL, hash_family=ReportFamily.VPDQ, matches=4, distinct=3),
            ],
        }
    )


def build_video_vector() -> dict[str, Any]:
    vector = build_vector(vector_report_with_video())
    vector["description"] = (
        "LIBRA report test vector with video families (protocol version 1, issue 13); "
        "the seed is public test data"
    )
    return vector


def video_cases(b: Builder) -> None:
    """Negative cases for the video families, appended after every older case (the older
    cases keep their sequences and bytes): names that look like a family but are not one."""
    bad = expected(422, "malformed_payload")
    for name, family in (
        ("payload-unknown-video-family", "video-phash"),  # vPDQ is video's only perceptual family
        ("payload-video-family-upper-case", "VPDQ"),  # family names are lower case
    ):
        b.add(
            name,
            f'hash_family "{family}"',
            bad,
            jcs(b.report(name, set_cell("hash_family", family))),
        )
