"""Coverage completeness and the items members (docs/protocol.md §3): the conformance
checker's reading of the text and the reference model agree on every report, valid or not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol.conformance_check import CheckFailed, _check_coverage, _check_items
from protocol.models import Report
from protocol.testvector import vector_report

PLACES = [("DE", 64501, "Hoster A Ltd"), ("NL", 64502, "Hoster B BV"), ("ZZ", 0, "unknown")]
FAMILIES = ["pdq", "md5"]


def _where(place: tuple[str, int, str]) -> dict[str, Any]:
    return {"country": place[0], "asn": place[1], "hoster": place[2]}


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(vector_report().to_payload())
    cells: list[dict[str, Any]] = []
    for place in draw(st.lists(st.sampled_from(PLACES), max_size=3, unique=True)):
        for family in draw(st.lists(st.sampled_from(FAMILIES), min_size=1, unique=True)):
            matches = draw(st.integers(0, 6))
            cells.append(_where(place) | {"hash_family": family, "matches": matches, "distinct": 0})
    rows: list[dict[str, Any]] = []
    for place in draw(st.lists(st.sampled_from(PLACES), max_size=4)):  # repeats possible
        pages, images = draw(st.integers(0, 5)), draw(st.integers(0, 8))
        rows.append(_where(place) | {"pages_fetched": pages, "images_hashed": images})
    data["cells"] = cells
    data["coverage"] = rows
    # Mostly summing denominators, sometimes off by one.
    data["denominators"] = {
        "pages_fetched": sum(r["pages_fetched"] for r in rows) + draw(st.sampled_from([0, 0, 1])),
        "images_hashed": sum(r["images_hashed"] for r in rows) + draw(st.sampled_from([0, 0, 1])),
        "hosts_seen": 3,
    }
    return data


def _model_accepts(data: dict[str, Any]) -> bool:
    try:
        Report.model_validate(data)
    except ValidationError:
        return False
    return True


def _checker_accepts(data: dict[str, Any]) -> bool:
    try:
        _check_coverage(data["coverage"], data["cells"], data["denominators"])
    except CheckFailed as exc:
        assert exc.code == "malformed_payload"
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(reports())
def test_checker_and_model_agree_on_coverage(data: dict[str, Any]) -> None:
    assert _checker_accepts(data) == _model_accepts(data)


def test_a_complete_coverage_is_accepted_and_every_rule_bites() -> None:
    data: dict[str, Any] = json.loads(vector_report().to_payload())
    de, zz = (
        {"country": "DE", "asn": 64501, "hoster": "Hoster A Ltd"},
        {"country": "ZZ", "asn": 0, "hoster": "unknown"},
    )
    good = [
        de | {"pages_fetched": 50, "images_hashed": 400},
        zz | {"pages_fetched": 10, "images_hashed": 10},
    ]
    assert _checker_accepts(data | {"coverage": good}) and _model_accepts(data | {"coverage": good})
    broken = {
        "sums": [good[0] | {"pages_fetched": 49}, good[1]],
        "missing hoster": [de | {"pages_fetched": 60, "images_hashed": 410}],
        "matches over images": [good[0] | {"images_hashed": 410}, good[1] | {"images_hashed": 0}],
        "repeated": [good[0], good[0] | {"pages_fetched": 0, "images_hashed": 0}, good[1]],
    }
    for name, rows in broken.items():
        assert not _checker_accepts(data | {"coverage": rows}), name
        assert not _model_accepts(data | {"coverage": rows}), name


@pytest.mark.parametrize(
    ("members", "ok"),
    [
        ({}, True),
        ({"items": None, "item_theta": None}, True),
        ({"items": 3, "item_theta": "AQMDAAAezJM="}, True),
        ({"items": 4, "item_theta": "AQMDAAAezJM="}, False),
        ({"items": 2}, False),
        ({"item_theta": "AQMDAAAezJM="}, False),
        ({"items": True, "item_theta": "AQMDAAAezJM="}, False),
        ({"items": -1, "item_theta": "AQMDAAAezJM="}, False),
    ],
)
def test_items_rules_agree_with_the_model(members: dict[str, Any], ok: bool) -> None:
    data: dict[str, Any] = json.loads(vector_report().to_payload())
    data["cells"][0] |= members  # matches 3
    try:
        _check_items(data["cells"][0], 3, "cells[0]")
        checker = True
    except CheckFailed:
        checker = False
    assert checker == _model_accepts(data) == ok


def test_null_coverage_is_refused_by_both_and_absent_is_fine() -> None:
    data: dict[str, Any] = json.loads(vector_report().to_payload())
    assert "coverage" not in data and _model_accepts(data)
    assert not _model_accepts(data | {"coverage": None})
    with pytest.raises(CheckFailed):
        _check_coverage(None, data["cells"], data["denominators"])
