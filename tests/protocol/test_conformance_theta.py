"""The conformance checker's own Theta check (protocol.conformance_theta): the header must
imply exactly the sketch's length before anything is decoded, exact-mode sketches must hold
exactly the count, estimation-mode ones need 2^15 entries and a count within 6 sigma."""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest
from datasketches import update_theta_sketch
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from protocol import REPORT_PAYLOAD_TYPE
from protocol.conformance_check import check_body
from protocol.conformance_theta import check_theta, theta_layout
from protocol.testvector import envelope_bytes, vector_key, vector_report
from protocol.theta import make_theta

KEY = bytes(range(32))


@cache
def _sketch(count: int, *, compressed: bool = True) -> bytes:
    raw = base64.b64decode(make_theta(KEY, (f"https://t{i}.example.net/" for i in range(count))))
    if compressed:
        return raw
    from datasketches import compact_theta_sketch

    return bytes(compact_theta_sketch.deserialize(raw, 9001).serialize(False))


@pytest.mark.parametrize("count", [0, 1, 2, 100, 32768])
@pytest.mark.parametrize("compressed", [True, False])
def test_exact_sketches_pass_with_their_count_only(count: int, compressed: bool) -> None:
    raw = _sketch(count, compressed=compressed)
    layout = theta_layout(raw)
    assert layout is not None and layout[0] == count
    assert check_theta(raw, count, "distinct") is None
    verdict = check_theta(raw, count + 1, "distinct")
    assert verdict is not None and verdict[0] == "sketch_mismatch"


def test_estimation_mode_holds_the_count_within_six_sigma() -> None:
    raw = _sketch(40_000)
    assert check_theta(raw, 40_000, "distinct") is None
    for wrong in (30_000, 41_500):  # about 13 and 7 standard deviations away
        verdict = check_theta(raw, wrong, "distinct")
        assert verdict is not None and verdict[0] == "sketch_mismatch", wrong


def test_estimation_mode_with_fewer_than_2_15_entries_is_malformed() -> None:
    sketch = update_theta_sketch(10, seed=9001)
    for i in range(5000):
        sketch.update(f"m{i}")
    sketch.trim()
    raw = bytes(sketch.compact(True).serialize(True))
    verdict = check_theta(raw, 5000, "distinct")
    assert verdict is not None and verdict[0] == "malformed_payload"
    assert "32768" in verdict[1]


@pytest.mark.parametrize("count", [1, 2, 100])
def test_every_cut_or_extension_is_refused_by_the_header_alone(count: int) -> None:
    raw = _sketch(count)
    for cut in range(len(raw)):
        assert theta_layout(raw[:cut]) is None, cut
    assert theta_layout(raw + b"\0") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_header_check_never_raises(raw: bytes) -> None:
    layout = theta_layout(raw)
    assert layout is None or layout[0] >= 0


@pytest.mark.parametrize(("count", "compressed"), [(1, True), (2, True), (100, True), (100, False)])
def test_every_single_header_byte_change_is_refused_or_decodes_safely(
    count: int, compressed: bool
) -> None:
    """Every value of every header byte (the first 16): the header check refuses the bytes, or
    what it lets through decodes (in this process: a decoder crash would end the test run) to
    a verdict, never an exception."""
    original = _sketch(count, compressed=compressed)
    for index in range(16):
        for value in range(256):
            raw = bytearray(original)
            raw[index] = value
            if theta_layout(bytes(raw)) is None:
                continue
            verdict = check_theta(bytes(raw), count, "distinct")
            assert verdict is None or verdict[0] in {"malformed_payload", "sketch_mismatch"}


def test_check_body_finds_an_estimation_mode_mismatch_end_to_end() -> None:
    report = vector_report()
    cell = report.cells[0].model_copy(
        update={
            "matches": 50_000,
            "distinct": 30_000,
            "url_theta": base64.b64encode(_sketch(40_000)).decode(),
        }
    )
    bad = report.model_copy(update={"cells": [cell, report.cells[1]]})
    key = vector_key()
    body = envelope_bytes(bad.to_payload(), REPORT_PAYLOAD_TYPE, key)
    found = check_body(body, VerifyKey(bytes(key.verify_key)))
    assert [code for code, _ in found.failed] == ["sketch_mismatch"], found.failed
    good_cell = cell.model_copy(update={"distinct": 40_000})
    good = report.model_copy(update={"cells": [good_cell, report.cells[1]]})
    found = check_body(envelope_bytes(good.to_payload(), REPORT_PAYLOAD_TYPE, key), None)
    assert found.ok, found.failed
    assert json.loads(good.to_payload())["cells"][0]["distinct"] == 40_000


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=0, max_size=120))
def test_any_url_theta_bytes_get_a_finding_not_an_exception(raw: bytes) -> None:
    """Arbitrary bytes as a cell's url_theta, through the whole offline check (decoded in the
    child process when the header allows): a clear finding, never a crash of the checker."""
    report = vector_report()
    cell = report.cells[0].model_copy(update={"url_theta": base64.b64encode(raw).decode()})
    bad = report.model_copy(update={"cells": [cell, report.cells[1]]})
    key = vector_key()
    found = check_body(envelope_bytes(bad.to_payload(), REPORT_PAYLOAD_TYPE, key), None)
    codes = {code for code, _ in found.failed}
    assert codes <= {"malformed_payload", "sketch_mismatch"}
    assert codes or check_theta(raw, cell.distinct, "distinct") is None
