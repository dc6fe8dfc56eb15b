"""Issue 16 on the node: reports built from real cycles carry Theta sketches of URLs and of list
items that equal the exact sets, item identities shared across nodes, and complete coverage
(pages and images per hoster, attributed like sightings), also after a resume or a kill."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from datasketches import compact_theta_sketch, theta_intersection
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import cycle
from node.attribution.attributor import Attributor
from node.clock import lab_clock
from node.crawl.crawler import ImageFound, PageFailed, PageFetched
from node.cycle import mark_interrupted
from node.db import make_engine
from node.federation.reporter import queue_report
from node.lists import ImportedRecord, import_records
from node.matching.matcher import MatchIndex
from node.models import RUNNING, AnalysedImage, CrawlCycle, HosterPages, HostPages
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import HashResult, ImageHashes, Period, Report, ReportCell
from protocol.theta import decode_theta, item_identity, make_theta, theta_bounds
from tests.node.conftest import flip_bits, hash_result, image_hashes, write_geoip
from tests.node.test_cycle import Event, FakeCrawler, FakeFunction
from tests.services import require_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The node database on SQLite and on PostgreSQL (a schema of its own)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}")
        yield eng
        eng.dispose()
        return
    url = require_postgres()
    schema = f"libra_node_theta_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    eng = make_engine(f"{url}{separator}options=-csearch_path%3D{schema}")
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


FED_KEY = bytes(range(32))
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
DAY = Period(start=datetime(2026, 3, 1, tzinfo=UTC), end=datetime(2026, 3, 2, tzinfo=UTC))
A = ("DE", 64500, "Hoster A")
B = ("NL", 64501, "Hoster B")
UNKNOWN = ("ZZ", 0, "unknown")


def import_list(engine: Engine, rng: random.Random) -> dict[str, ImageHashes]:
    """Three listed items: record 1 with MD5 and PDQ, record 2 with SHA-1 only, record 3 PDQ."""
    items = {"one": image_hashes(rng), "two": image_hashes(rng), "three": image_hashes(rng)}
    import_records(
        engine,
        [
            ImportedRecord(HashFamily.MD5, items["one"].md5, 1),
            ImportedRecord(HashFamily.PDQ, items["one"].pdq, 1),
            ImportedRecord(HashFamily.SHA1, items["two"].sha1, 2),
            ImportedRecord(HashFamily.PDQ, items["three"].pdq, 3),
        ],
        source="t",
        version="1",
        format_name="test",
    )
    return items


def reencoded(rng: random.Random, listed: ImageHashes, bits: list[int]) -> ImageHashes:
    """A re-encoded copy: other bytes (other cryptographic hashes), a PDQ a few bits away."""
    return image_hashes(rng, pdq=flip_bits(listed.pdq, bits))


def crawl_world(
    rng: random.Random, items: dict[str, ImageHashes]
) -> tuple[list[Event], dict[str, HashResult]]:
    """Pages at Hoster A (127.0.1.x), Hoster B (127.0.2.x) and an address-less one."""
    events: list[Event] = [
        PageFetched("http://a.test/", "a.test", 200, 0, "127.0.1.5", "a.test"),
        PageFetched("http://a.test/p2", "a.test", 200, 1, "127.0.1.5", "a.test"),
        PageFailed("http://a.test/gone", "a.test", "http_404"),
        PageFetched("http://b.test/", "b.test", 200, 0, "127.0.2.8", "b.test"),
        PageFetched("http://c.test/", "c.test", 200, 0, None, None),
    ]
    answers = {
        # An exact copy of item one (found by MD5) and two re-encoded ones (found by PDQ).
        "http://a.test/1.png": hash_result("http://a.test/1.png", items["one"], "127.0.1.5"),
        "http://a.test/2.png": hash_result(
            "http://a.test/2.png", reencoded(rng, items["one"], [1, 2, 3]), "127.0.1.5"
        ),
        "http://a.test/3.png": hash_result("http://a.test/3.png", image_hashes(rng), "127.0.1.5"),
        "http://a.test/4.png": hash_result(
            "http://a.test/4.png", reencoded(rng, items["one"], [7, 80]), "127.0.1.6"
        ),
        "http://b.test/1.png": hash_result("http://b.test/1.png", items["two"], "127.0.2.8"),
        "http://b.test/3.png": hash_result(
            "http://b.test/3.png", reencoded(rng, items["three"], [9]), "127.0.2.8"
        ),
        "http://c.test/1.png": hash_result("http://c.test/1.png", image_hashes(rng), None),
    }
    for url in answers:
        host = url.split("/")[2]
        events.append(ImageFound(url, f"http://{host}/", host))
    return events, answers


async def run_cycle(
    engine: Engine,
    tmp_path: Path,
    events: list[Event],
    answers: dict[str, HashResult],
    *,
    run_key: str | None = None,
    at: datetime = T0,
) -> FakeFunction:
    function = FakeFunction(dict(answers))
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=function,
            index=MatchIndex.from_db(engine),
            attributor=attributor,
            seeds=["http://a.test/"],
            concurrency=3,
            run_key=run_key,
            clock=lab_clock(at),
        )
    return function


def report_of(engine: Engine, federation_key: bytes = FED_KEY) -> Report:
    return queue_report(
        engine, node_id="node-a", key=NodeKey.generate(), federation_key=federation_key, period=DAY
    ).report


def sketch(b64: str | None) -> compact_theta_sketch:
    assert b64 is not None
    return decode_theta(b64)


def overlap(a: str | None, b: str | None) -> int:
    both = theta_intersection()
    both.update(sketch(a))
    both.update(sketch(b))
    return theta_bounds(both.get_result())[0]


def same_set(b64: str | None, members: set[str]) -> bool:
    """The sketch holds exactly ``members`` (keyed): exact, and its overlap with them is all."""
    estimate, lower, upper = theta_bounds(sketch(b64))
    exact = estimate == lower == upper == len(members)
    return exact and overlap(b64, make_theta(FED_KEY, members)) == len(members)


def cells_by_key(report: Report) -> dict[tuple[str, int, str, str], ReportCell]:
    return {(c.country, c.asn, c.hoster, c.hash_family.value): c for c in report.cells}


def coverage_of(report: Report) -> dict[tuple[str, int, str], tuple[int, int]]:
    return {
        (r.country, r.asn, r.hoster): (r.pages_fetched, r.images_hashed) for r in report.coverage
    }


TRUE_COVERAGE = {A: (2, 4), B: (1, 2), UNKNOWN: (1, 1)}


async def test_thetas_and_coverage_equal_the_exact_sets(engine: Engine, tmp_path: Path) -> None:
    rng = random.Random(16)
    items = import_list(engine, rng)
    events, answers = crawl_world(rng, items)
    await run_cycle(engine, tmp_path, events, answers)
    report = report_of(engine)
    one = item_identity("pdq", items["one"].pdq)  # record 1 is named by its PDQ
    truth = {
        (*A, "md5"): (1, {"http://a.test/1.png"}, {one}),
        (*A, "pdq"): (2, {"http://a.test/2.png", "http://a.test/4.png"}, {one}),
        (*B, "sha1"): (1, {"http://b.test/1.png"}, {item_identity("sha1", items["two"].sha1)}),
        (*B, "pdq"): (1, {"http://b.test/3.png"}, {item_identity("pdq", items["three"].pdq)}),
    }
    cells = cells_by_key(report)
    assert set(cells) == set(truth)
    for key, (matches, urls, identities) in truth.items():
        cell = cells[key]
        assert (cell.matches, cell.distinct, cell.items) == (matches, len(urls), len(identities))
        assert same_set(cell.url_theta, urls), key
        assert same_set(cell.item_theta, identities), key
        assert cell.sketch is not None  # the HLL stays for older coordinators
    # Denominators per hoster: pages by the address that served them, images like sightings.
    assert coverage_of(report) == TRUE_COVERAGE
    assert (report.denominators.pages_fetched, report.denominators.images_hashed) == (4, 7)
    with Session(engine) as session:
        placed = {a.url: (a.country, a.asn, a.hoster) for a in session.exec(select(AnalysedImage))}
    assert placed["http://c.test/1.png"] == UNKNOWN and placed["http://a.test/3.png"] == A
    # Only keyed sketches travel: no URL, no hash value.
    payload = report.to_payload().decode()
    assert "a.test" not in payload and items["one"].pdq not in payload


async def test_two_nodes_name_one_item_alike_however_they_found_it(tmp_path: Path) -> None:
    rng = random.Random(61)
    items = {"one": image_hashes(rng), "two": image_hashes(rng), "three": image_hashes(rng)}
    exact = hash_result("http://a.test/x.png", items["one"], "127.0.1.5")
    copy = hash_result("http://b.test/y.jpg", reencoded(rng, items["one"], [4, 44]), "127.0.2.8")
    cells: dict[str, ReportCell] = {}
    for name, result in (("a", exact), ("b", copy)):
        (tmp_path / name).mkdir()
        engine = make_engine(f"sqlite:///{tmp_path / name / 'node.sqlite3'}")
        # Both agencies hold the same list record (an item with its MD5 and its PDQ).
        import_records(
            engine,
            [
                ImportedRecord(HashFamily.MD5, items["one"].md5, 1),
                ImportedRecord(HashFamily.PDQ, items["one"].pdq, 1),
            ],
            source="shared",
            version="1",
            format_name="test",
        )
        url = result.url
        host = url.split("/")[2]
        await run_cycle(engine, tmp_path / name, [ImageFound(url, url, host)], {url: result})
        (cells[name],) = report_of(engine).cells
        engine.dispose()
    # Node a found the exact copy by MD5 at Hoster A, node b the re-encoded copy by PDQ at B.
    assert (cells["a"].hoster, cells["a"].hash_family) == ("Hoster A", HashFamily.MD5)
    assert (cells["b"].hoster, cells["b"].hash_family) == ("Hoster B", HashFamily.PDQ)
    assert overlap(cells["a"].item_theta, cells["b"].item_theta) == 1
    assert overlap(cells["a"].url_theta, cells["b"].url_theta) == 0  # two different URLs
    # Under another federation's key the same item is another key: nothing in common.
    other = make_theta(bytes(32), [item_identity("pdq", items["one"].pdq)])
    assert overlap(cells["a"].item_theta, other) == 0


async def test_a_resumed_cycle_counts_its_effort_once(engine: Engine, tmp_path: Path) -> None:
    rng = random.Random(17)
    items = import_list(engine, rng)
    events, answers = crawl_world(rng, items)
    late = "http://b.test/late.png"
    first = [
        e for e in events if not (isinstance(e, ImageFound) and e.url.startswith("http://b.test/"))
    ]
    await run_cycle(engine, tmp_path, first, answers, run_key="seeds")
    # The process "dies" before the end: the cycle row is left running, its pages unwritten.
    with Session(engine) as session, session.begin():
        session.execute(update(CrawlCycle).values(status=RUNNING, pages_fetched=0))
        session.execute(delete(HosterPages))
        session.execute(delete(HostPages))
    # The restart replays the finished pages (with who served them), re-emits every image and
    # finds one more; only the images not analysed yet go to the function.
    answers[late] = hash_result(late, image_hashes(rng), "127.0.2.8")
    replay = [*events, ImageFound(late, "http://b.test/", "b.test")]
    function = await run_cycle(engine, tmp_path, replay, answers, run_key="seeds")
    assert sorted(url for url, _ in function.calls) == [
        "http://b.test/1.png",
        "http://b.test/3.png",
        late,
    ]
    report = report_of(engine)
    assert coverage_of(report) == {A: (2, 4), B: (1, 3), UNKNOWN: (1, 1)}
    assert report.denominators.images_hashed == 8


async def test_a_killed_cycle_reports_the_images_it_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(18)
    items = import_list(engine, rng)
    events, answers = crawl_world(rng, items)
    await run_cycle(engine, tmp_path, events, answers)
    with Session(engine) as session, session.begin():
        session.execute(
            update(CrawlCycle).values(status=RUNNING, pages_fetched=0, images_hashed=0, matches=0)
        )
        session.execute(delete(HosterPages))
        session.execute(delete(HostPages))
    assert mark_interrupted(engine, lab_clock(T0 + timedelta(minutes=9))) == 1
    report = report_of(engine)  # sightings with their images hashed, pages lost with the process
    assert coverage_of(report) == {A: (0, 4), B: (0, 2), UNKNOWN: (0, 1)}
    assert sum(c.matches for c in report.cells) == 5
    with Session(engine) as session:
        (row,) = session.exec(select(CrawlCycle)).all()
    assert row.status == "interrupted" and row.images_hashed == 7 and row.matches == 5
    assert row.finished_at is not None and row.finished_at >= T0 + timedelta(minutes=9)


async def test_images_analysed_before_n0005_mean_no_coverage(
    engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(19)
    items = import_list(engine, rng)
    events, answers = crawl_world(rng, items)
    await run_cycle(engine, tmp_path, events, answers)
    with Session(engine) as session, session.begin():  # as the migration leaves old rows
        session.execute(update(AnalysedImage).values(country=None, asn=None, hoster=None))
    report = report_of(engine)
    assert report.coverage == [] and len(report.cells) == 4  # reported, without coverage
