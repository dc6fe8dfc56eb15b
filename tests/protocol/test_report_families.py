"""Issue 13: report families (image hash families plus the video families), the media rule,
the video vector, and that old reports keep their bytes."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from protocol.conformance_check import FAMILIES as CHECKED_FAMILIES
from protocol.hashes import (
    FAMILIES,
    HashFamily,
    ReportFamily,
    media_of,
    report_family_of,
)
from protocol.models import Report, ReportCell
from protocol.testvector import VECTOR_PATH, build_vector
from protocol.testvector_video import VECTOR_VIDEO_PATH

VIDEO = {"video-md5", "video-sha1", "video-sha256", "vpdq"}


def test_report_families_extend_hash_families_with_the_same_strings() -> None:
    assert {f.value for f in HashFamily} <= {f.value for f in ReportFamily}
    assert {f.value for f in ReportFamily} - {f.value for f in HashFamily} == {
        *VIDEO,
        "vpdq-frame",
    }
    # The video names never reach hashing or the matcher's index.
    assert {f.value for f in FAMILIES} == {f.value for f in HashFamily}
    assert "vpdq" not in {f.value for f in HashFamily}
    # The offline checker names exactly the same families.
    assert {f.value for f in ReportFamily} == CHECKED_FAMILIES


@pytest.mark.parametrize("family", list(ReportFamily))
def test_media_of(family: ReportFamily) -> None:
    # vpdq-frame is a still found on the web: an image, though the listed item is a video.
    assert media_of(family) == ("video" if family.value in VIDEO else "image")


def test_report_family_of() -> None:
    for family in HashFamily:
        assert report_family_of(family, "image") == ReportFamily(family.value)
    assert report_family_of(HashFamily.MD5, "video") is ReportFamily.VIDEO_MD5
    assert report_family_of(HashFamily.SHA1, "video") is ReportFamily.VIDEO_SHA1
    assert report_family_of(HashFamily.SHA256, "video") is ReportFamily.VIDEO_SHA256
    assert report_family_of(HashFamily.PDQ, "video") is ReportFamily.VPDQ
    assert report_family_of(HashFamily.PDQ, "image", "video") is ReportFamily.VPDQ_FRAME
    with pytest.raises(ValueError, match="phash has no video report family"):
        report_family_of(HashFamily.PHASH, "video")
    with pytest.raises(ValueError, match="only by pdq"):
        report_family_of(HashFamily.MD5, "image", "video")
    with pytest.raises(ValueError, match="media must be 'image' or 'video'"):
        report_family_of(HashFamily.PDQ, "audio")


def _cell(family: str) -> dict[str, object]:
    return {"country": "DE", "asn": 1, "hoster": "H", "hash_family": family, "matches": 1,
            "distinct": 1}  # fmt: skip


def test_cell_takes_video_families_and_refuses_unknown_ones() -> None:
    for family in ("video-md5", "vpdq", "vpdq-frame", "md5"):
        assert ReportCell.model_validate(_cell(family)).hash_family.value == family
    for family in ("sha512", "video-phash", "VPDQ", "video_md5", ""):
        with pytest.raises(ValidationError, match="hash_family"):
            ReportCell.model_validate(_cell(family))


def test_old_vector_keeps_its_bytes_under_report_family() -> None:
    on_disk = json.loads(VECTOR_PATH.read_text(encoding="utf-8"))
    report = Report.from_payload(on_disk["payload_utf8"].encode())
    assert all(isinstance(c.hash_family, ReportFamily) for c in report.cells)
    assert report.to_payload().decode() == on_disk["payload_utf8"]
    assert build_vector()["envelope_canonical"] == on_disk["envelope_canonical"]


def test_video_vector_holds_each_kind_of_video_cell() -> None:
    vector = json.loads(VECTOR_VIDEO_PATH.read_text(encoding="utf-8"))
    report = Report.from_payload(vector["payload_utf8"].encode())
    families = {c.hash_family: c for c in report.cells}
    assert set(families) == {
        ReportFamily.PDQ,
        ReportFamily.VIDEO_MD5,
        ReportFamily.VPDQ,
        ReportFamily.VPDQ_FRAME,
    }
    assert [media_of(c.hash_family) for c in report.cells].count("video") == 2
    assert report.sequence == 7
