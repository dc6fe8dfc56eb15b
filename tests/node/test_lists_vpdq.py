"""vPDQ list entries (issue 13): every text form is stored as one canonical video entry, in
every list format that can carry it, and exported so that it imports back unchanged."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from node.lists import get_importer, import_list
from node.lists.base import (
    MAX_VPDQ_FRAMES,
    ImportedRecord,
    Media,
    RejectedRecord,
    VideoFamily,
    normalize_vpdq,
)
from node.lists.export import export
from node.matching.vpdq_text import format_lines, parse_pytx
from protocol.hashes import InvalidHash
from tests.node.conftest import rand_hex

RNG = random.Random(31)
FRAMES = [(n, float(n), rand_hex(RNG, 256), 100 - n) for n in range(4)]
LINES = format_lines(FRAMES)
CANONICAL = normalize_vpdq(LINES)

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "vpdq"


def test_every_text_form_has_one_canonical_spelling() -> None:
    legacy = json.dumps(
        {str(n): {"quality": q, "hash": h, "timestamp": t} for n, t, h, q in FRAMES}
    )
    assert normalize_vpdq(CANONICAL) == CANONICAL
    assert normalize_vpdq(legacy) == CANONICAL
    assert [(f.pdq, f.quality) for f in parse_pytx(CANONICAL)] == [(h, q) for _, _, h, q in FRAMES]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "at least one frame"),
        ("[]", "at least one frame"),
        ("0,100,zz,0.000", "PDQ"),
        ("[1, 2]", "string"),
        ("{", "JSON"),
    ],
)
def test_bad_vpdq_text_is_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidHash, match=why):
        normalize_vpdq(text)


def test_too_many_frames_are_refused() -> None:
    pdq = rand_hex(RNG, 256)
    many = json.dumps([f"{pdq},100,{n}.000" for n in range(MAX_VPDQ_FRAMES + 1)])
    with pytest.raises(InvalidHash, match="more than"):
        normalize_vpdq(many)


@given(st.text(max_size=200))
def test_any_text_is_a_value_or_an_invalid_hash(text: str) -> None:
    try:
        value = normalize_vpdq(text)
    except InvalidHash:
        return
    assert normalize_vpdq(value) == value


def test_the_vpdq_file_format_reads_the_reference_files() -> None:
    reference = VECTORS / "chair-19-sd-bar.txt"
    if not reference.exists():
        pytest.skip(f"vectors not found at {VECTORS}")
    [record] = list(get_importer("vpdq").records(io.BytesIO(reference.read_bytes())))
    assert isinstance(record, ImportedRecord)
    assert (record.family, record.media) == (VideoFamily.VPDQ, Media.VIDEO)
    lines = [ln for ln in reference.read_text().splitlines() if ln.strip()]
    assert len(parse_pytx(record.value)) == len(lines)


def test_a_bad_vpdq_file_is_one_rejected_record() -> None:
    [record] = list(get_importer("vpdq").records(io.StringIO("not a hash\n")))
    assert isinstance(record, RejectedRecord) and record.line == 1


def test_vpdq_entries_round_trip_through_csv_and_vics(engine: Engine) -> None:
    import_list(engine, get_importer("vpdq"), io.StringIO(LINES), source="v", version="1")
    for name in ("csv", "vics"):
        out = io.StringIO()
        assert export(engine, out, name) == 1
        [record] = list(get_importer(name).records(io.StringIO(out.getvalue())))
        assert isinstance(record, ImportedRecord), record
        assert (record.family, record.value, record.media) == (
            VideoFamily.VPDQ,
            CANONICAL,
            Media.VIDEO,
        )
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT family, media FROM list_entry").all()
    assert [tuple(r) for r in rows] == [("vpdq", "video")]
    # A second import of the same video in another spelling is a duplicate, not a new entry.
    summary = import_list(
        engine,
        get_importer("hma"),
        io.StringIO(f'vpdq,"{CANONICAL.replace(chr(34), chr(34) * 2)}",c,x,\n'),
        source="h",
        version="1",
    )
    assert summary.duplicates == 1
