"""Issue 12: the report payload is read strictly (types, timestamps, period, canonical bytes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785

from protocol.errors import MalformedPayload, ProtocolError, UnsupportedVersion
from protocol.models import KeyRotation, Report
from protocol.testvector import vector_report

Mutation = Callable[[dict[str, Any]], None]


def vector_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(vector_report().to_payload())
    return data


def canon(data: Any) -> bytes:
    return bytes(rfc8785.dumps(data))


def test_the_vector_report_reads_back() -> None:
    assert Report.from_payload(canon(vector_data())) == vector_report()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["cells"][0].update(matches=True),
        lambda d: d["cells"][0].update(matches="2"),
        lambda d: d["cells"][0].update(distinct=False),
        lambda d: d["cells"][0].update(asn="64501"),
        lambda d: d["denominators"].update(pages_fetched="60"),
        lambda d: d.update(sequence=True),
        lambda d: d.update(sequence="7"),
        lambda d: d.update(created_at="2026-11-24T12:00:00.5Z"),
        lambda d: d.update(created_at="2026-11-24T12:00:00+00:00"),
        lambda d: d.update(created_at="2026-11-24 12:00:00Z"),
        lambda d: d.update(created_at="2026-02-30T12:00:00Z"),  # no such day
        lambda d: d.update(created_at="٢٠٢٦-11-24T12:00:00Z"),  # non-ASCII digits
        lambda d: d.update(created_at=1795521600),  # a Unix time
        lambda d: d["period"].update(start="2026-11-23T00:00:00.000Z"),
        lambda d: d["cells"][0].update(matches=1, distinct=2),  # distinct > matches
    ],
    ids=[
        "matches-true",
        "matches-string",
        "distinct-false",
        "asn-string",
        "denominator-string",
        "sequence-true",
        "sequence-string",
        "created-fraction",
        "created-offset",
        "created-space",
        "created-feb-30",
        "created-arabic-digits",
        "created-number",
        "period-fraction",
        "distinct-over-matches",
    ],
)
def test_loose_values_are_malformed_payload(mutate: Mutation) -> None:
    data = vector_data()
    mutate(data)
    with pytest.raises(MalformedPayload):
        Report.from_payload(canon(data))


def test_float_count_is_refused_even_when_integral() -> None:
    data = vector_data()
    payload = canon(data).replace(b'"matches":3', b'"matches":3.0')
    assert payload != canon(data)
    with pytest.raises(MalformedPayload, match="RFC 8785"):
        Report.from_payload(payload)
    # A fraction is canonical JSON, so the schema itself must refuse it.
    data["cells"][0]["matches"] = 3.5
    assert b'"matches":3.5' in canon(data)
    with pytest.raises(MalformedPayload, match="matches"):
        Report.from_payload(canon(data))


def test_version_true_is_unsupported() -> None:
    data = vector_data()
    data["protocol_version"] = True
    with pytest.raises(UnsupportedVersion):
        Report.from_payload(canon(data))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-23T00:00:00Z", "2026-11-23T00:00:00Z", "after its start"),
        ("2026-11-23T00:00:00Z", "2026-11-22T00:00:00Z", "after its start"),
        ("2026-11-23T00:00:00Z", "2026-11-23T00:00:59Z", "60 s to 31 days"),
        ("2026-10-01T00:00:00Z", "2026-11-01T00:00:01Z", "60 s to 31 days"),
        ("2026-11-24T12:05:01Z", "2026-11-25T00:00:00Z", "300 s after"),  # created 12:00:00
        ("2026-12-23T00:00:00Z", "2026-12-24T00:00:00Z", "300 s after"),  # 30 days ahead
        ("2025-10-19T00:00:00Z", "2025-10-20T00:00:00Z", "400 days before"),
        ("2001-01-01T00:00:00Z", "2001-01-02T00:00:00Z", "400 days before"),
    ],
)
def test_period_bounds_are_bad_period(start: str, end: str, message: str) -> None:
    data = vector_data()
    assert data["created_at"] == "2026-11-24T12:00:00Z"
    data["period"] = {"start": start, "end": end}
    with pytest.raises(ProtocolError, match=message) as info:
        Report.from_payload(canon(data))
    assert (info.value.code, info.value.http_status) == ("bad_period", 422)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-24T11:59:00Z", "2026-11-24T12:00:00Z"),  # exactly 60 s
        ("2026-10-24T12:00:00Z", "2026-11-24T12:00:00Z"),  # exactly 31 days
        ("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"),  # the running day: ends ahead
        ("2026-11-24T12:05:00Z", "2026-11-24T13:00:00Z"),  # starts exactly 300 s after
        ("2025-10-20T12:00:00Z", "2025-10-21T12:00:00Z"),  # starts exactly 400 days before
    ],
)
def test_period_bounds_are_inclusive(start: str, end: str) -> None:
    data = vector_data()
    data["period"] = {"start": start, "end": end}
    assert Report.from_payload(canon(data)).period.end.isoformat().startswith(end[:10])


@pytest.mark.parametrize(
    "payload",
    [
        # Two "cells" members: json.loads would keep the second.
        b'{"cells":[],"cells":[{"x":1}]}',
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"a":NaN}',
        b'{"a":"\\ud800"}',
    ],
    ids=["duplicate-cells", "deep", "nan", "lone-surrogate"],
)
def test_strict_json_defects_are_malformed_payload(payload: bytes) -> None:
    with pytest.raises(MalformedPayload):
        Report.from_payload(payload)


def test_duplicate_cells_member_in_the_signed_report() -> None:
    canonical = canon(vector_data())
    cells_at = canonical.index(b'"cells":')
    doubled = canonical[:cells_at] + b'"cells":[],' + canonical[cells_at:]
    with pytest.raises(MalformedPayload, match="duplicate"):
        Report.from_payload(doubled)


@pytest.mark.parametrize(
    "respell",
    [
        lambda p: p.replace(b"{", b"{ ", 1),  # whitespace
        lambda p: p.replace(b'"sequence":1', b'"sequence":1e0'),  # exponent form
        lambda p: p.replace(b'"sequence":1', b'"sequence":1.0'),
        lambda p: p.replace(b'"Hoster', b'"\\u0048oster', 1),  # an unneeded escape
        lambda p: p + b"\n",
        lambda p: json.dumps(json.loads(p), sort_keys=False).encode(),
    ],
    ids=["space", "exponent", "fraction", "escape", "newline", "python-json"],
)
def test_non_canonical_spellings_are_refused(respell: Callable[[bytes], bytes]) -> None:
    payload = canon(vector_data())
    assert b'"sequence":1' in payload and b'"Hoster' in payload
    other = respell(payload)
    assert other != payload
    with pytest.raises(MalformedPayload, match="RFC 8785"):
        Report.from_payload(other)


def test_canonical_check_helpers() -> None:
    from protocol.models import check_canonical, parse_signed_payload

    data = parse_signed_payload(b'{"a":1,"b":[true,null]}')
    check_canonical(b'{"a":1,"b":[true,null]}', data)
    with pytest.raises(MalformedPayload):
        check_canonical(b'{"b":[true,null],"a":1}', data)
    with pytest.raises(MalformedPayload, match="object"):
        parse_signed_payload(b"[1]")


def test_key_rotation_is_strict_too() -> None:
    good = {
        "node_id": "node-a",
        "current_key_id": "a" * 64,
        "new_public_key": "x",
        "created_at": "2026-11-24T12:00:00Z",
        "overlap_seconds": 60,
    }
    KeyRotation.model_validate(good)
    for change in ({"overlap_seconds": "60"}, {"overlap_seconds": True}, {"created_at": 1}):
        with pytest.raises(ValueError):
            KeyRotation.model_validate(good | change)
    with pytest.raises(ValueError):
        KeyRotation.model_validate(good | {"created_at": "2026-11-24T12:00:00.1Z"})
