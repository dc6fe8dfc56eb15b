"""Report model: canonical bytes, versions, schema errors, big integers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785

from protocol.canonical import UnsafeInteger, canonical_json
from protocol.errors import MalformedPayload, StaleTimestamp, UnsupportedVersion
from protocol.freshness import check_fresh
from protocol.models import Report
from protocol.testvector import vector_report


def canon(data: Any) -> bytes:
    """RFC 8785 bytes, so each test reaches the check it names (not the canonical-form one).
    Integers beyond 2^53 have no RFC 8785 form: those payloads are refused as non-canonical."""
    try:
        return bytes(rfc8785.dumps(data))
    except rfc8785.IntegerDomainError:
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def test_payload_is_rfc8785_canonical() -> None:
    payload = vector_report().to_payload()
    data = json.loads(payload)
    assert payload == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert Report.from_payload(payload) == vector_report()


def test_canonical_json_refuses_integers_beyond_2_53() -> None:
    with pytest.raises(UnsafeInteger):
        canonical_json({"n": 2**53 + 1})
    assert canonical_json({"n": str(2**64)}) == b'{"n":"18446744073709551616"}'


def test_unsupported_version_is_its_own_error() -> None:
    data = json.loads(vector_report().to_payload())
    data["protocol_version"] = 2
    with pytest.raises(UnsupportedVersion):
        Report.from_payload(canon(data))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(extra=1),
        lambda d: d.update(report_id="not-hex"),
        lambda d: d.update(sequence=0),
        lambda d: d["cells"][0].update(country="Germany"),
        lambda d: d["cells"][0].update(hash_family="photodna"),
        lambda d: d["cells"].append(dict(d["cells"][0])),
        lambda d: d.update(created_at="2026-11-24T12:00:00"),
    ],
)
def test_schema_violations_are_malformed_payload(mutate) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(vector_report().to_payload())
    mutate(data)
    with pytest.raises(MalformedPayload):
        Report.from_payload(canon(data))


def test_non_json_payload() -> None:
    with pytest.raises(MalformedPayload):
        Report.from_payload(b"\xff\xfe")


def test_freshness_window() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    check_fresh(now - timedelta(days=1), now, timedelta(days=7))
    with pytest.raises(StaleTimestamp):
        check_fresh(now - timedelta(days=8), now, timedelta(days=7))
    with pytest.raises(StaleTimestamp):
        check_fresh(now + timedelta(hours=1), now, timedelta(days=7))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["cells"][0].update(matches=2**53),
        lambda d: d["denominators"].update(pages_fetched=2**53),
        lambda d: d["cells"][0].update(hoster="evil\x00name"),
        lambda d: d["cells"][0].update(hoster="line\nbreak"),
    ],
)
def test_counts_and_names_stay_in_range(mutate) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(vector_report().to_payload())
    mutate(data)
    with pytest.raises(MalformedPayload):
        Report.from_payload(canon(data))


def test_non_ascii_base64_is_malformed_envelope() -> None:
    from protocol.dsse import parse_envelope
    from protocol.errors import MalformedEnvelope

    with pytest.raises(MalformedEnvelope):
        parse_envelope(
            {"payloadType": "t", "payload": "\x80", "signatures": [{"keyid": "a" * 64, "sig": "s"}]}
        )


def _removals(**change: object) -> dict[str, object]:
    row: dict[str, object] = {
        "country": "DE",
        "asn": 64501,
        "hoster": "Hoster A Ltd",
        "notices_sent": 2,
        "urls_noticed": 2,
        "removed": 2,
        "removed_within_24h": 1,
        "removed_within_72h": 2,
        "median_seconds": 50000,
        "p90_seconds": 90000,
    }
    row.update(change)
    return row


@pytest.mark.parametrize(
    "change",
    [
        {"removed_within_24h": 3},  # more within 24 h than removed at all
        {"removed_within_72h": 0},  # fewer within 72 h than within 24 h
        {"median_seconds": None},  # removals without a median
        {"removed": 0, "removed_within_24h": 0, "removed_within_72h": 0},  # a median of nothing
        {"notices_sent": -1},
        {"hoster": "bad\nname"},
    ],
)
def test_inconsistent_removal_rows_are_malformed(change: dict[str, object]) -> None:
    data = json.loads(vector_report().to_payload())
    data["removals"] = [_removals(**change)]
    with pytest.raises(MalformedPayload):
        Report.from_payload(canon(data))


def test_removal_rows_are_unique_per_hoster() -> None:
    data = json.loads(vector_report().to_payload())
    data["removals"] = [_removals(), _removals(notices_sent=5)]
    with pytest.raises(MalformedPayload, match="appear twice"):
        Report.from_payload(canon(data))
    data["removals"] = [_removals()]
    report = Report.from_payload(canon(data))
    assert report.removals[0].median_seconds == 50000
    assert json.loads(report.to_payload())["removals"] == [_removals() | {"removal_sketch": None}]
