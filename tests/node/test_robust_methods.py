"""Issue 18 on the node: dihedral, trimmed and region queries match, each match records how it
was found, and the node counts sightings by method per report cell."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import cycle
from node.attribution.attributor import Attributor
from node.config import MatchSettings, NodeSettings
from node.crawl.crawler import ImageFound, PageFailed, PageFetched
from node.dispatch import AnalyzeFailure
from node.federation.reporter import build_cells
from node.lists import ImportedRecord, import_records
from node.matching.index import persist
from node.matching.matcher import Match, MatchIndex, Method
from node.models import CrawlCycle, Sighting
from protocol.hashes import HashFamily
from protocol.models import HashResult
from tests.node.conftest import flip_bits, hash_result, image_hashes, rand_hex, write_geoip
from tests.node.test_cycle import FakeCrawler, FakeFunction


def test_trimmed_hash_matches_with_method_trimmed() -> None:
    rng = random.Random(1)
    listed = rand_hex(rng, 256)
    index = MatchIndex([(5, "pdq", listed)])
    framed = image_hashes(rng, pdq_trimmed=[flip_bits(listed, [0, 7])], pdq_trimmed_quality=90)
    assert index.match(framed) == [Match(5, HashFamily.PDQ, 2, Method.TRIMMED)]
    # A trimmed hash of low quality (the inside of a frame is flat) never matches.
    flat = image_hashes(rng, pdq_trimmed=[listed], pdq_trimmed_quality=49)
    assert index.match(flat) == []


def test_low_quality_image_matches_by_no_variant() -> None:
    rng = random.Random(2)
    listed = rand_hex(rng, 256)
    index = MatchIndex([(5, "pdq", listed)])
    hashes = image_hashes(rng, pdq_quality=10, pdq_dihedral=[rand_hex(rng, 256), listed])
    assert index.match(hashes) == []


def test_region_hashes_match_their_entry_and_go_with_it() -> None:
    rng = random.Random(3)
    listed, region = rand_hex(rng, 256), rand_hex(rng, 256)
    index = MatchIndex([(7, "pdq", listed)])
    index.add_regions([(7, [region])])
    crop = image_hashes(rng, pdq=flip_bits(region, [1, 2, 3]))
    assert index.match(crop) == [Match(7, HashFamily.PDQ, 3, Method.REGION)]
    # The same image matching both directly and by a region counts once, as direct.
    both = MatchIndex([(7, "pdq", listed)])
    both.add_regions([(7, [listed])])
    assert both.match(image_hashes(rng, pdq=listed)) == [Match(7, HashFamily.PDQ, 0)]
    # A copy PDQ alone finds is direct, even when a region hash (or variant) is nearer.
    near = MatchIndex([(7, "pdq", listed)])
    near.add_regions([(7, [flip_bits(listed, [9])])])
    seen = image_hashes(
        rng, pdq=flip_bits(listed, [1, 2, 3, 4]), pdq_dihedral=[flip_bits(listed, [9, 10])]
    )
    assert near.match(seen) == [Match(7, HashFamily.PDQ, 4, Method.DIRECT)]
    # Removing the entry removes its derived region hashes.
    index.remove([7])
    assert index.match(crop) == []


def test_region_table_survives_the_index_file_round_trip() -> None:
    rng = random.Random(4)
    listed, region = rand_hex(rng, 256), rand_hex(rng, 256)
    index = MatchIndex([(7, "pdq", listed)])
    index.add_regions([(7, [region])])
    loaded, stamp = persist.decode(persist.encode(index, "s1"))
    assert stamp == "s1"
    assert loaded.match(image_hashes(rng, pdq=region)) == [
        Match(7, HashFamily.PDQ, 0, Method.REGION)
    ]


@settings(max_examples=60, deadline=None)
@given(
    flips=st.lists(st.integers(0, 255), unique=True, max_size=60),
    where=st.sampled_from(["direct", "dihedral", "trimmed", "region"]),
)
def test_every_method_uses_the_pdq_threshold(flips: list[int], where: str) -> None:
    """Whichever way a query reaches an entry, it matches iff within the PDQ cut-off (31)."""
    rng = random.Random(len(flips))
    listed = rand_hex(rng, 256)
    near = flip_bits(listed, flips)
    other = rand_hex(rng, 256)
    index = MatchIndex([(1, "pdq", listed if where != "region" else other)])
    extra: dict[str, object] = {}
    if where == "region":
        index.add_regions([(1, [listed])])
        extra["pdq"] = near
    elif where == "direct":
        extra["pdq"] = near
    elif where == "dihedral":
        extra["pdq_dihedral"] = [rand_hex(rng, 256), near]
    else:
        extra.update(pdq_trimmed=[near], pdq_trimmed_quality=80)
    found = index.match(image_hashes(rng, **extra))
    expected = [Match(1, HashFamily.PDQ, len(flips), Method(where))] if len(flips) <= 31 else []
    assert found == expected


async def test_cycle_records_the_method_and_counts_by_cell(engine: Engine, tmp_path: Path) -> None:
    rng = random.Random(5)
    mirrored, framed, plain = image_hashes(rng), image_hashes(rng), image_hashes(rng)
    entries = [
        ImportedRecord(HashFamily.PDQ, mirrored.pdq, 1),
        ImportedRecord(HashFamily.PDQ, framed.pdq, 2),
        ImportedRecord(HashFamily.PDQ, plain.pdq, 3),
    ]
    import_records(engine, entries, source="t", version="1", format_name="test")
    index = MatchIndex.from_db(engine)
    # What the function returns for a mirrored copy, a framed copy and an exact copy.
    seen_mirrored = image_hashes(rng, pdq_dihedral=[rand_hex(rng, 256), mirrored.pdq])
    seen_framed = image_hashes(rng, pdq_trimmed=[framed.pdq], pdq_trimmed_quality=100)
    answers: dict[str, HashResult | AnalyzeFailure | Exception] = {
        "http://a.test/m.png": hash_result("http://a.test/m.png", seen_mirrored, "127.0.1.5"),
        "http://a.test/f.png": hash_result("http://a.test/f.png", seen_framed, "127.0.1.5"),
        "http://a.test/p.png": hash_result("http://a.test/p.png", plain, "127.0.2.8"),
    }
    events: list[PageFetched | PageFailed | ImageFound] = [
        PageFetched("http://a.test/", "a.test", 200, 0),
        *(ImageFound(url, "http://a.test/", "a.test") for url in answers),
    ]
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=FakeFunction(answers),
            index=index,
            attributor=attributor,
            seeds=["http://a.test/"],
            concurrency=2,
            dihedral=True,
        )
    assert summary.matches == 3
    with Session(engine) as session:
        methods = {s.url: s.method for s in session.exec(select(Sighting)).all()}
    assert methods == {
        "http://a.test/m.png": "dihedral",
        "http://a.test/f.png": "trimmed",
        "http://a.test/p.png": "direct",
    }
    with Session(engine) as session:
        cycle_ids = [c for c in session.exec(select(CrawlCycle.id)).all() if c is not None]
        cells = build_cells(session, cycle_ids, bytes(32))
    counts = {
        (c.country, c.asn, c.hoster, c.hash_family.value): c.methods and c.methods.model_dump()
        for c in cells
    }
    assert counts == {
        ("DE", 64500, "Hoster A", "pdq"): {"direct": 0, "dihedral": 1, "trimmed": 1, "region": 0},
        ("NL", 64501, "Hoster B", "pdq"): {"direct": 1, "dihedral": 0, "trimmed": 0, "region": 0},
    }


def test_dihedral_matching_is_on_by_default() -> None:
    assert MatchSettings().dihedral is True
    settings = NodeSettings.model_validate({"node_id": "node-de", "country": "DE"})
    assert settings.match.dihedral is True
