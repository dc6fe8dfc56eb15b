"""Issue 18 on the list side: `libra hash --regions` output imports as the ``libra-hash`` format;
an entry keeps its own hash as its value and its region hashes as derived data, encrypted at
rest, loaded into the match index (full build and incremental) and never exported."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node.db import make_engine
from node.keys.list_encryption import ListKey, create_list_key
from node.lists import ImportedRecord, RejectedRecord, get_importer, import_list
from node.lists.export import export
from node.matching.index import persist
from node.matching.matcher import Match, MatchIndex, Method
from node.models import ListEntry
from protocol.hashes import HashFamily
from tests.node.conftest import image_hashes, rand_hex


def _line(pdq: str, regions: list[str] | None, **extra: object) -> str:
    hashes: dict[str, object] = {"pdq": pdq, "pdq_quality": 100, "sha256": "ab" * 32}
    if regions is not None:
        hashes["pdq_regions"] = regions
    return json.dumps({"path": "x.jpg", "hashes": hashes, **extra}) + "\n"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Engine, ListKey, Path]:
    key = create_list_key(tmp_path / "lists.key")
    return make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}", key), key, tmp_path / "index"


def _import(engine: Engine, body: str, version: str = "1") -> int:
    summary = import_list(
        engine, get_importer("libra-hash"), io.StringIO(body), source="agency", version=version
    )
    return summary.list_version_id


def test_regions_are_stored_encrypted_and_match_as_region(
    setup: tuple[Engine, ListKey, Path],
) -> None:
    engine, key, directory = setup
    rng = random.Random(1)
    listed, regions = rand_hex(rng, 256), [rand_hex(rng, 256) for _ in range(3)]
    _import(engine, _line(listed, regions) + _line(rand_hex(rng, 256), None))
    with Session(engine) as session:
        entries = session.exec(select(ListEntry).order_by(ListEntry.id)).all()  # type: ignore[arg-type]
        raw = session.execute(text("SELECT regions FROM list_entry ORDER BY id")).all()
    assert entries[0].value == listed  # the list keeps the image's own hash
    assert entries[0].regions == " ".join(regions) and entries[1].regions is None
    assert raw[0][0] is not None and regions[0] not in raw[0][0]  # encrypted at rest
    index = persist.current(engine, directory, key)
    crop = image_hashes(rng, pdq=regions[1])
    assert index.match(crop) == [Match(1, HashFamily.PDQ, 0, Method.REGION)]
    # Exports carry the list's values only, never the derived region hashes.
    out = io.StringIO()
    export(engine, out, "plain", family="pdq")
    assert listed in out.getvalue() and all(r not in out.getvalue() for r in regions)


def test_incremental_import_brings_its_regions(setup: tuple[Engine, ListKey, Path]) -> None:
    engine, key, directory = setup
    rng = random.Random(2)
    _import(engine, _line(rand_hex(rng, 256), [rand_hex(rng, 256)]))
    persist.current(engine, directory, key)
    before, stamp = persist.load(directory, key), persist.db_stamp(engine)
    assert before is not None
    region = rand_hex(rng, 256)
    version = _import(engine, _line(rand_hex(rng, 256), [region]), version="2")
    index = persist.apply_change(
        engine, directory, key, before, stamp, added=persist.version_entries(engine, version)
    )
    assert index is before[0]  # incremental, not rebuilt
    assert index.match(image_hashes(rng, pdq=region)) == [
        Match(2, HashFamily.PDQ, 0, Method.REGION)
    ]
    assert MatchIndex.from_db(engine).match(image_hashes(rng, pdq=region)) != []


def test_regions_of_an_image_already_listed_are_kept(setup: tuple[Engine, ListKey, Path]) -> None:
    """A `libra hash --regions` list imported after a list holding the same images (an ICSE
    file with exact hash and PDQ per row, say) adds the region hashes to the entries already
    held instead of dropping them as duplicates; the persisted index learns them
    incrementally, and a third import changes nothing."""
    engine, key, directory = setup
    rng = random.Random(5)
    listed, region = rand_hex(rng, 256), rand_hex(rng, 256)
    _import(engine, _line(listed, None))  # the PDQ alone, as another format would bring it
    persist.current(engine, directory, key)
    before, stamp = persist.load(directory, key), persist.db_stamp(engine)
    assert before is not None
    summary = import_list(
        engine,
        get_importer("libra-hash"),
        io.StringIO(_line(listed, [region])),
        source="agency",
        version="2",
    )
    assert (summary.imported, summary.duplicates, summary.regions_added) == (0, 1, [1])
    index = persist.apply_change(
        engine, directory, key, before, stamp, regions_added=summary.regions_added
    )
    assert index is before[0]  # incremental, not rebuilt
    crop = image_hashes(rng, pdq=region)
    assert index.match(crop) == [Match(1, HashFamily.PDQ, 0, Method.REGION)]
    assert MatchIndex.from_db(engine).match(crop) == [Match(1, HashFamily.PDQ, 0, Method.REGION)]
    again = import_list(
        engine,
        get_importer("libra-hash"),
        io.StringIO(_line(listed, [rand_hex(rng, 256)])),
        source="agency",
        version="3",
    )
    assert again.regions_added == []  # regions already held are not replaced
    with Session(engine) as session:
        assert session.exec(select(ListEntry.regions)).all() == [region]


def test_bad_lines_are_rejected_with_their_line_number() -> None:
    rng = random.Random(3)
    good = _line(rand_hex(rng, 256), [rand_hex(rng, 256)])
    bad = [
        "not json\n",
        "[1, 2]\n",
        json.dumps({"path": "y.jpg", "error": {"code": "decode_failed", "message": "x"}}) + "\n",
        json.dumps({"hashes": {"md5": "00" * 16}}) + "\n",
        _line("zz" * 32, None),
        _line(rand_hex(rng, 256), ["12"]),
        _line(rand_hex(rng, 256), [int("1" * 64)]),  # type: ignore[list-item]
        _line(rand_hex(rng, 256), [rand_hex(rng, 256)] * 65),
    ]
    records = list(get_importer("libra-hash").records(io.StringIO(good + "".join(bad))))
    assert isinstance(records[0], ImportedRecord) and len(records[0].regions) == 1
    assert [r.line for r in records[1:] if isinstance(r, RejectedRecord)] == list(range(2, 10))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.text(max_size=400) | st.lists(st.text(max_size=80), max_size=6).map("\n".join))
def test_any_text_gives_records_or_rejections_never_an_exception(body: str) -> None:
    for record in get_importer("libra-hash").records(io.StringIO(body)):
        assert isinstance(record, ImportedRecord | RejectedRecord)


@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(
        st.none(), st.integers(), st.text(max_size=70), st.lists(st.text(max_size=70), max_size=4)
    )
)
def test_any_json_value_in_the_fields_is_handled(value: object) -> None:
    body = json.dumps({"hashes": {"pdq": value, "pdq_regions": value}}) + "\n"
    (record,) = get_importer("libra-hash").records(io.StringIO(body))
    assert isinstance(record, ImportedRecord | RejectedRecord)
