"""Negative vectors: their bodies follow from their templates, and an offline check of each
body finds the defect the vector names, with the same error code."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from protocol.conformance_check import check_body, json_depth
from protocol.models import Report
from protocol.testvector import NEGATIVE_DIR, VECTOR_PATH, vector_keys
from protocol.vector_template import Binding, Signed, expand

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SUITES = sorted(NEGATIVE_DIR.glob("*.json"))
# Cases whose refusal depends on the receiver's registry, clock or state, or on HTTP headers:
# an offline look at the body alone cannot see their defect.
NEEDS_A_RECEIVER = {
    "payload-unknown-node",
    "payload-stale",
    "payload-future",
    "payload-sequence-gap",
    "node-not-active",
    "replayed-report",
    "sequence-regression",
    "revoked-key",
    "content-type-text-plain",
    "content-type-latin1",
    "envelope-unknown-key",
    "rotation-node-mismatch",
    "rotation-stale",
    "rotation-content-type",
    "rotation-announced-by-unknown-key",
}


def _cases() -> list[dict[str, Any]]:
    return [case for path in SUITES for case in json.loads(path.read_text())["cases"]]


def _signed_cases() -> list[dict[str, Any]]:
    return [case for case in _cases() if "payload_b64" in case]


def test_there_are_vectors_for_each_defect_the_protocol_names() -> None:
    codes = {case["expected"].get("code") for case in _cases()}
    assert {
        "malformed_envelope",
        "malformed_payload",
        "bad_period",
        "sketch_mismatch",
        "sequence_gap",
        "unsupported_media_type",
        "key_mismatch",
        "unknown_key",
        "bad_signature",
        "unknown_payload_type",
        "unsupported_version",
        "stale_timestamp",
        "replayed_report",
        "sequence_regression",
        "node_not_active",
        "revoked_key",
        "unknown_node",
        "invalid_request",
    } <= codes
    names = [case["name"] for case in _cases()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", _signed_cases(), ids=lambda c: c["name"])
def test_body_is_the_expanded_template(case: dict[str, Any]) -> None:
    payload = base64.b64decode(case["payload_b64"])
    if "payload_text" in case:
        assert case["payload_text"].encode() == payload
    body = expand(case["body_template"], Signed(payload, case["payload_type"], vector_keys()))
    assert body == base64.b64decode(case["body_b64"])


def test_every_expected_code_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for case in _cases():
        expected = case["expected"]
        codes = (
            [expected["code"]] if "code" in expected else [r["code"] for r in expected["results"]]
        )
        for code in codes:
            # `code` or `422 code` (a line break may sit between status and code)
            assert re.search(rf"`(\d{{3}}\s+)?{code}`", text), (case["name"], code)


@pytest.mark.parametrize(
    "case",
    [c for c in _signed_cases() if c["name"] not in NEEDS_A_RECEIVER],
    ids=lambda c: c["name"],
)
def test_offline_check_finds_the_named_defect(case: dict[str, Any]) -> None:
    public = VerifyKey(bytes(vector_keys()["current"].verify_key))
    found = check_body(base64.b64decode(case["body_b64"]), public)
    assert not found.ok, case["name"]
    codes = {code for code, _message in found.failed}
    assert case["expected"]["code"] in codes, (case["name"], found.failed)


def test_offline_check_passes_the_positive_vectors() -> None:
    public = VerifyKey(bytes(vector_keys()["current"].verify_key))
    for name in (
        "report-v1.json",
        "report-v1-removals.json",
        "report-v1-sketch.json",
        "report-v1-methods.json",
        "report-v1-coverage.json",
        "report-v1-video.json",
    ):
        vector = json.loads((VECTOR_PATH.parent / name).read_text())
        found = check_body(vector["envelope_canonical"].encode(), public)
        assert found.ok and not found.skipped, (name, found.failed)
    rotation = json.loads((VECTOR_PATH.parent / "key-rotation-v1.json").read_text())
    found = check_body(rotation["request_canonical"].encode(), public)
    assert found.ok and not found.skipped, found.failed
    # Without the signer's key the signature is reported as not checked, not as passed.
    found = check_body(rotation["request_canonical"].encode(), None)
    assert found.ok and found.skipped


def test_offline_check_refuses_a_non_canonical_envelope() -> None:
    vector = json.loads(VECTOR_PATH.read_text())
    loose = json.dumps(vector["envelope"], indent=1).encode()  # same content, other bytes
    found = check_body(loose, None)
    assert [code for code, _ in found.failed] == ["noncanonical_body"]


_NODE_ID = st.from_regex(r"[a-z0-9][a-z0-9-]{1,40}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(node_id=_NODE_ID, shift_s=st.integers(min_value=-(10**8), max_value=10**8))
def test_rebinding_keeps_a_valid_payload_valid_and_canonical(node_id: str, shift_s: int) -> None:
    payload = json.loads(VECTOR_PATH.read_text())["payload_utf8"].encode()
    key = vector_keys()["other"]
    binding = Binding(
        strings={"node-example": node_id, vector_keys()["current"].key_id: key.key_id},
        shift=timedelta(seconds=shift_s),
        report_id=lambda old: old[::-1],
    )
    moved = binding.apply(payload)
    report = Report.from_payload(moved)
    assert report.to_payload() == moved  # still RFC 8785 canonical
    assert report.node_id == node_id and report.key_id == key.key_id
    original = Report.from_payload(payload)
    assert report.created_at - original.created_at == timedelta(seconds=shift_s)
    assert report.period.end - report.period.start == original.period.end - original.period.start


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_offline_check_never_raises(raw: bytes) -> None:
    found = check_body(raw, None)
    assert not found.ok or found.skipped


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=20,
    )
)
def test_json_depth_counts_nesting(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    text = json.dumps(value)
    assert json_depth(text) == depth(value)
