"""Issue 13: the reporter names each cell by its report family (protocol.hashes.ReportFamily)."""

from __future__ import annotations

import pytest

from node.federation.reporter import _report_family
from protocol.hashes import HashFamily, ReportFamily


@pytest.mark.parametrize("family", list(HashFamily))
def test_image_sightings_keep_their_family_name(family: HashFamily) -> None:
    # Every sighting today is of an image matched against listed images: unchanged on the wire.
    found = _report_family(family.value)
    assert type(found) is ReportFamily and found.value == family.value


def test_report_only_families_pass_through_and_unknown_ones_are_refused() -> None:
    assert _report_family("vpdq-frame") is ReportFamily.VPDQ_FRAME
    assert _report_family("video-md5") is ReportFamily.VIDEO_MD5
    with pytest.raises(ValueError, match="sha512"):
        _report_family("sha512")
