"""Issue 14: the report's optional ``discovery`` member (docs/protocol.md §3): valid rows, one
row per hoster, bounds, counts only, and reports without it keep their bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from protocol.conformance_check import CheckFailed, check_report
from protocol.errors import MalformedPayload
from protocol.models import MAX_COUNT, HosterDiscovery, Report
from protocol.testvector import VECTOR_PATH, vector_report
from protocol.testvector_discovery import VECTOR_DISCOVERY_PATH, vector_report_with_discovery

ROW: dict[str, Any] = {
    "country": "DE",
    "asn": 64501,
    "hoster": "Hoster A Ltd",
    "candidates": 4,
    "confirmed": 1,
    "rejected": 2,
}


def _with(*rows: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(vector_report().to_payload())
    data["discovery"] = list(rows)
    return data


def test_a_report_with_discovery_round_trips_through_its_signed_bytes() -> None:
    report = Report.model_validate(_with(ROW, {**ROW, "country": "NL", "hoster": "Hoster B BV"}))
    payload = report.to_payload()
    assert json.loads(payload)["discovery"][0] == ROW
    assert Report.from_payload(payload) == report


def test_a_report_without_discovery_keeps_its_bytes() -> None:
    # report-v1 was published before discovery existed: its signed bytes are unchanged.
    stored = json.loads(VECTOR_PATH.read_text(encoding="utf-8"))["payload_utf8"].encode()
    report = vector_report()
    assert report.discovery == []
    assert report.to_payload() == stored
    assert b"discovery" not in stored


def test_one_row_per_hoster() -> None:
    with pytest.raises(ValidationError, match=r"discovery for .* appears twice"):
        Report.model_validate(_with(ROW, {**ROW, "candidates": 9}))
    # Another ASN or country at the same hoster name is another place.
    Report.model_validate(_with(ROW, {**ROW, "asn": 64599}))


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("candidates", -1),
        ("confirmed", MAX_COUNT + 1),
        ("rejected", True),  # strict integers: a bool is no count
        ("candidates", 1.0),
        ("country", "de"),
        ("hoster", ""),
        ("hoster", "bad\nname"),
        ("asn", 2**32),
    ],
)
def test_bounds(member: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        HosterDiscovery.model_validate({**ROW, member: value})


@pytest.mark.parametrize("extra", ["sha256", "url", "host", "page_url"])
def test_counts_only_an_unknown_member_is_refused(extra: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        HosterDiscovery.model_validate({**ROW, extra: "x"})


def test_the_conformance_checker_agrees_with_the_model() -> None:
    vector = json.loads(VECTOR_DISCOVERY_PATH.read_text(encoding="utf-8"))
    data = json.loads(vector["payload_utf8"])
    check_report(data, data["key_id"])  # the published vector passes
    assert Report.from_payload(vector["payload_utf8"].encode()) == vector_report_with_discovery()
    duplicated = dict(data, discovery=[ROW, ROW])
    with pytest.raises(CheckFailed) as failed:
        check_report(duplicated, data["key_id"])
    assert failed.value.code == MalformedPayload.code
