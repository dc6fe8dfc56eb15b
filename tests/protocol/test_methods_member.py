"""The optional cell member `methods` (docs/protocol.md §3): the model and the offline checker
agree on every breakdown, and a cell without it keeps its old bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol.conformance_check import CheckFailed, _check_methods
from protocol.models import ReportCell
from protocol.testvector import vector_report

KEYS = ("direct", "dihedral", "trimmed", "region")
counts = st.one_of(st.integers(-3, 12), st.booleans(), st.just("1"), st.just(1.0))


def _cell(matches: int, methods: Any) -> dict[str, Any]:
    return {
        "country": "DE",
        "asn": 1,
        "hoster": "h",
        "hash_family": "pdq",
        "matches": matches,
        "distinct": 0,
        "methods": methods,
    }


def _valid(matches: int, methods: Any) -> bool:
    if methods is None:
        return True
    if not isinstance(methods, dict) or set(methods) != set(KEYS):
        return False
    values = list(methods.values())
    if any(type(v) is not int or v < 0 for v in values):
        return False
    return bool(sum(values) == matches)


@settings(max_examples=300, deadline=None)
@given(
    matches=st.integers(0, 30),
    methods=st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from([*KEYS, "crop"]), counts, max_size=5),
        st.fixed_dictionaries({k: st.integers(0, 10) for k in KEYS}),
    ),
)
def test_model_and_checker_accept_exactly_the_valid_breakdowns(matches: int, methods: Any) -> None:
    expected = _valid(matches, methods)
    try:
        ReportCell.model_validate(_cell(matches, methods))
        model_ok = True
    except ValidationError:
        model_ok = False
    try:
        _check_methods(methods, matches, "cells[0].methods")
        checker_ok = True
    except CheckFailed as exc:
        assert exc.code == "malformed_payload"
        checker_ok = False
    assert model_ok == checker_ok == expected


def test_sum_must_equal_matches() -> None:
    with pytest.raises(ValidationError, match="methods must sum to matches"):
        ReportCell.model_validate(_cell(3, {"direct": 1, "dihedral": 1, "trimmed": 0, "region": 0}))


def test_absent_methods_leave_the_payload_unchanged() -> None:
    cells = json.loads(vector_report().to_payload())["cells"]
    assert cells and all("methods" not in c for c in cells)
