"""The candidate collector and the writer without a network (node.discovery.collect and
node.discovery.persist): context counting, the memory bound, upsert by SHA-256, clusters that
join pending candidates, bad input; and a cycle whose candidate writing fails still finishes."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import cycle
from node.attribution.attributor import Attribution, Attributor
from node.config import DiscoverySettings
from node.crawl.crawler import ImageFound, PageFetched
from node.cycle import run
from node.db import make_engine
from node.discovery.collect import CandidateCollector, DiscoveryOutcome, directory_of
from node.discovery.models import Candidate
from node.discovery.negative import NegativeIndex
from node.keys.list_encryption import ListKey
from node.lists import ImportedRecord, import_records
from node.matching.matcher import MatchIndex
from node.models import CrawlCycle
from protocol.hashes import HashFamily
from protocol.models import HashResult, ImageHashes, VideoHashes
from tests.node.conftest import flip_bits, hash_result, image_hashes, write_geoip
from tests.node.test_cycle import Event, FakeCrawler, FakeFunction
from tests.services import require_postgres

HERE = Attribution("DE", 64500, "Hoster A")
LIST_KEY = ListKey(b"\x05" * 32)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The node database with a list key (hashes encrypted: the SHA-256 upsert looks up
    encrypted values), on SQLite and on PostgreSQL (a schema of its own)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'node.sqlite3'}", LIST_KEY)
        yield eng
        eng.dispose()
        return
    url = require_postgres()
    schema = f"libra_node_discovery_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    eng = make_engine(f"{url}{separator}options=-csearch_path%3D{schema}", LIST_KEY)
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "directory"),
    [
        ("http://a.test/album/1.jpg?x=1#y", "http://a.test/album/"),
        ("http://a.test/1.jpg", "http://a.test/"),
        ("http://a.test", "http://a.test/"),
        ("https://a.test:8443/a/b/", "https://a.test:8443/a/b/"),
        ("data:sha256,abcd", None),
    ],
)
def test_directory_of(url: str, directory: str | None) -> None:
    assert directory_of(url) == directory


def _add(
    collector: CandidateCollector,
    url: str,
    page: str,
    hashes: ImageHashes,
    matched: bool = False,
    *,
    video: bool = False,
) -> None:
    host = url.split("/")[2]
    result = hash_result(url, hashes)
    if video:
        result = result.model_copy(
            update={"video": VideoHashes(duration=1, frames_decoded=1, frame_interval=1, frames=[])}
        )
    collector.add(ImageFound(url, page, host), url, result, matched, HERE)


def _urls(collector: CandidateCollector) -> set[str]:
    return {f.url for f in collector.found()[0]}


def test_memory_bound_drops_cold_groups_first() -> None:
    rng = random.Random(1)
    collector = CandidateCollector(DiscoverySettings(), max_kept=4)
    _add(collector, "http://y.test/k.png", "http://y.test/p2", image_hashes(rng), matched=True)
    _add(collector, "http://y.test/1.png", "http://y.test/p2", image_hashes(rng))
    _add(collector, "http://y.test/2.png", "http://y.test/p2", image_hashes(rng))
    for n in range(3):  # nothing known on x.test: the cold group goes first
        _add(collector, f"http://x.test/{n}.png", "http://x.test/p1", image_hashes(rng))
    assert (collector.kept, collector.dropped) == (2, 3)
    assert _urls(collector) == {"http://y.test/1.png", "http://y.test/2.png"}
    for n in range(3):  # all warm now: the oldest group goes
        _add(collector, f"http://y.test/3{n}.png", "http://y.test/p3", image_hashes(rng))
    assert (collector.kept, collector.dropped) == (3, 5)
    assert _urls(collector) == {f"http://y.test/3{n}.png" for n in range(3)}
    # the counters stay whole: the page's known item is still counted for what is kept
    found, near_known = collector.found()
    assert near_known == 3
    assert {r["signal"] for r in found[0].reasons()} == {"same_directory", "same_site", "size"}


def test_videos_count_as_items_but_are_never_kept() -> None:
    rng = random.Random(2)
    collector = CandidateCollector(DiscoverySettings())
    page = "http://a.test/p"
    _add(collector, "http://a.test/v.mp4", page, image_hashes(rng), matched=True, video=True)
    _add(collector, "http://a.test/w.mp4", page, image_hashes(rng), video=True)
    _add(collector, "http://a.test/1.png", page, image_hashes(rng))
    found, _ = collector.found()
    assert [f.url for f in found] == ["http://a.test/1.png"]
    page_reason = found[0].reasons()[0]
    assert page_reason["detail"] == f"1 of 3 hashed items on its page {page} is known"


def test_unpackable_hashes_are_counted_not_kept() -> None:
    collector = CandidateCollector(DiscoverySettings())
    _add(
        collector, "http://a.test/1.png", "http://a.test/", image_hashes(random.Random(3), md5="x")
    )
    assert (collector.kept, collector.invalid) == (0, 1)


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_kept must be at least 1"):
        CandidateCollector(DiscoverySettings(), max_kept=0)


def _cycle_row(engine: Engine) -> int:
    with Session(engine) as session, session.begin():
        row = CrawlCycle(started_at=NOW)
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def _finish(engine: Engine, collector: CandidateCollector) -> DiscoveryOutcome:
    cycle_id = _cycle_row(engine)
    with Session(engine) as session, session.begin():
        return collector.finish(session, cycle_id, NOW)


def _rows(engine: Engine) -> dict[str, Candidate]:
    with Session(engine) as session:
        return {r.url: r for r in session.exec(select(Candidate)).all()}


def test_same_image_under_two_urls_is_one_candidate(stored: Engine) -> None:
    engine = stored
    rng = random.Random(4)
    image = image_hashes(rng)
    collector = CandidateCollector(DiscoverySettings())
    _add(collector, "http://a.test/p/k.png", "http://a.test/p", image_hashes(rng), matched=True)
    _add(collector, "http://a.test/p/1.png", "http://a.test/p", image)
    _add(collector, "http://a.test/q/1.png", "http://a.test/q", image)  # weaker context
    outcome = _finish(engine, collector)
    assert (outcome.created, outcome.duplicates) == (1, 1)
    assert list(_rows(engine)) == ["http://a.test/p/1.png"]


def test_new_images_join_pending_clusters(stored: Engine) -> None:
    """Cycle 1: two far-apart candidates A and C. Cycle 2: B, near both A and C, on a page with
    more known items: one cluster of three, B (highest score) represents it."""
    engine = stored
    rng = random.Random(5)
    a = image_hashes(rng)
    c = image_hashes(rng, pdq=flip_bits(a.pdq, list(range(0, 24))))  # 24 from A
    b = image_hashes(rng, pdq=flip_bits(a.pdq, list(range(0, 12))))  # 12 from each
    first = CandidateCollector(DiscoverySettings())
    # known items on their pages, served by another host: same_page only (65 points)
    _add(first, "http://k.test/p/k.png", "http://a.test/p", image_hashes(rng), matched=True)
    _add(first, "http://a.test/p/a.png", "http://a.test/p", a)
    _add(first, "http://k.test/q/k.png", "http://a.test/q", image_hashes(rng), matched=True)
    _add(first, "http://a.test/q/c.png", "http://a.test/q", c)
    assert _finish(engine, first).created == 2
    rows = _rows(engine)
    assert all((r.cluster_id, r.members, r.score) == (None, 1, 65) for r in rows.values())

    second = CandidateCollector(DiscoverySettings())
    for n in range(3):
        _add(second, f"http://b.test/r/k{n}.png", "http://b.test/r", image_hashes(rng), True)
    _add(second, "http://b.test/r/b.png", "http://b.test/r", b)
    assert _finish(engine, second).created == 1
    rows = _rows(engine)
    rep = rows["http://b.test/r/b.png"]
    assert (rep.cluster_id, rep.members) == (None, 3)
    for url in ("http://a.test/p/a.png", "http://a.test/q/c.png"):
        assert (rows[url].cluster_id, rows[url].members) == (rep.id, 1)
    assert {r["signal"] for r in json.loads(rep.reasons)} >= {"same_page", "near_duplicates"}


def test_negative_list_and_low_scores_are_not_written(engine: Engine) -> None:
    rng = random.Random(6)
    rejected, weak = image_hashes(rng), image_hashes(rng)
    negative = NegativeIndex([("md5", rejected.md5)])
    collector = CandidateCollector(DiscoverySettings(), negative)
    _add(collector, "http://a.test/p/k.png", "http://a.test/p", image_hashes(rng), matched=True)
    _add(collector, "http://a.test/p/1.png", "http://a.test/p", rejected)
    _add(collector, "http://a.test/other/2.png", "http://a.test/o", weak)  # same site only
    _add(collector, "http://z.test/3.png", "http://z.test/", image_hashes(rng))  # nothing near
    outcome = _finish(engine, collector)
    assert (outcome.created, outcome.negative, outcome.scored, outcome.not_kept) == (0, 1, 2, 2)
    assert _rows(engine) == {}


async def test_a_failing_writer_loses_candidates_not_the_cycle(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(CandidateCollector):
        def finish(self, session: Session, cycle_id: int, now: datetime) -> DiscoveryOutcome:
            session.add(Candidate(first_cycle_id=cycle_id, last_cycle_id=cycle_id, url="u",
                                  final_url="u", page_url="p", host="h", country="DE", asn=1,
                                  hoster="x", sha256="00"))  # fmt: skip
            session.flush()
            raise RuntimeError("writer bug")

    rng = random.Random(7)
    url = "http://a.test/1.png"
    answers: dict[str, HashResult | Exception] = {url: hash_result(url, image_hashes(rng))}
    crawler = FakeCrawler(
        [
            PageFetched("http://a.test/", "a.test", 200, 0),
            ImageFound(url, "http://a.test/", "a.test"),
        ]
    )
    with Attributor(*write_geoip(tmp_path)) as attributor, caplog.at_level(logging.ERROR):
        summary = await run(
            engine=engine,
            crawler=crawler,
            function=FakeFunction(answers),  # type: ignore[arg-type]
            index=MatchIndex([]),
            attributor=attributor,
            seeds=["http://a.test/"],
            discovery=Broken(DiscoverySettings()),
        )
    assert (summary.status, summary.images_hashed, summary.candidates) == ("done", 1, 0)
    assert "its candidates could not be written" in caplog.text
    assert _rows(engine) == {}  # the savepoint took the half-written rows back
    with Session(engine) as session:
        row = session.get(CrawlCycle, summary.cycle_id)
        assert row is not None and row.status == "done"


async def test_a_killed_cycle_loses_its_candidates_and_counts_none_twice(
    engine: Engine, tmp_path: Path
) -> None:
    """u1 was recorded before the kill: the resumed cycle neither sends it again nor makes it a
    candidate (its collector died). The resumed part finds u2 and u3 beside the known k; the
    next full cycle finds u1 too and counts u2 and u3 as seen twice, not as new."""
    rng = random.Random(8)
    known = image_hashes(rng)
    record = ImportedRecord(HashFamily.MD5, known.md5, 1)
    import_records(engine, [record], source="t", version="1", format_name="test")
    page = "http://a.test/p"
    urls = {n: f"http://a.test/p/{n}.png" for n in ("k", "u1", "u2", "u3")}
    answers: dict[str, HashResult | Exception] = {
        url: hash_result(url, known if n == "k" else image_hashes(rng)) for n, url in urls.items()
    }
    events: list[Event] = [PageFetched(page, "a.test", 200, 0)]
    events += [ImageFound(url, page, "a.test") for url in urls.values()]
    index = MatchIndex.from_db(engine)
    with Attributor(*write_geoip(tmp_path)) as attributor:
        killed = cycle._start_cycle(engine, "seeds")
        before = cycle._Cycle(engine, killed, FakeFunction({}), index, attributor, False, None)
        before.discovery = CandidateCollector(DiscoverySettings())
        before.record_batch([(events[2], answers[urls["u1"]])])  # type: ignore[list-item]
        # ... and the process dies: no finish, the cycle row stays running

        async def once() -> cycle.CycleSummary:
            return await cycle.run(
                engine=engine,
                crawler=FakeCrawler(events),
                function=FakeFunction(answers),  # type: ignore[arg-type]
                index=index,
                attributor=attributor,
                seeds=[page],
                run_key="seeds",
                discovery=CandidateCollector(DiscoverySettings()),
            )

        resumed = await once()
        assert resumed.cycle_id == killed and resumed.candidates == 2
        rows = _rows(engine)
        assert set(rows) == {urls["u2"], urls["u3"]}
        detail = json.loads(rows[urls["u2"]].reasons)[0]["detail"]
        assert detail == f"1 of 3 hashed items on its page {page} is known"  # u1 not counted

        full = await once()
    assert full.cycle_id != killed and full.candidates == 1
    rows = _rows(engine)
    assert {url: r.times_seen for url, r in rows.items()} == {
        urls["u1"]: 1,
        urls["u2"]: 2,
        urls["u3"]: 2,
    }


def test_crawl_summary_prints_candidates_and_suppressed(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from node.cli import main
    from node.cycle import CycleSummary

    out = io.StringIO()
    monkeypatch.setattr(main, "console", Console(file=out, width=200))
    summary = CycleSummary(
        cycle_id=3, status="done", started_at=NOW, finished_at=NOW, pages_fetched=1,
        pages_failed=0, images_found=9, images_hashed=9, analysis_failures=0, matches=2,
        hosts_seen=1, candidates=4, suppressed=1,
    )  # fmt: skip
    main._print_cycle(summary)
    rows = out.getvalue().splitlines()[1:]  # "  label   value"
    lines = {row[:30].strip(): row[30:].strip() for row in rows}
    assert (lines["candidates"], lines["matches suppressed"]) == ("4", "1")


def test_service_builds_the_collector_from_settings(engine: Engine) -> None:
    from node.config import NodeSettings
    from node.discovery.models import NegativeEntry
    from node.service import discovery_of

    with Session(engine) as session, session.begin():
        session.add(NegativeEntry(family="md5", value="ab" * 16, actor="t"))
    base = {"node_id": "lab-node", "country": "DE"}
    on = NodeSettings.model_validate(base | {"discovery": {"cluster_max_distance": 9}})
    collector = discovery_of(on, engine)
    assert collector is not None
    assert collector.settings.cluster_max_distance == collector.negative.max_distance == 9
    assert collector.negative.suppresses(image_hashes(random.Random(9), md5="ab" * 16))
    off = NodeSettings.model_validate(base | {"discovery": {"enabled": False}})
    assert discovery_of(off, engine) is None


def test_the_service_flood_guard_holds_and_counts(engine: Engine) -> None:
    """node.service.flood_guard: the cycle's flooding entry's sightings are held, counted on
    the cycle row and returned (node.cycle.run puts the number in the summary)."""
    from node.config import NodeSettings
    from node.service import flood_guard
    from tests.node.candidates_kit import add_cycle, add_entries, add_sightings

    (entry,) = add_entries(engine, "md5", ["cd" * 16])
    cycle_id = add_cycle(engine, status="running")
    add_sightings(engine, cycle_id, entry, 3)
    base = {"node_id": "lab-node", "country": "DE"}
    settings = NodeSettings.model_validate(base | {"discovery": {"flood_min_matches": 3}})
    assert flood_guard(settings, engine, lambda: NOW)(cycle_id) == 3
    with Session(engine) as session:
        row = session.get(CrawlCycle, cycle_id)
        assert row is not None and row.held == 3


async def test_the_guard_sees_every_cycle_while_it_is_still_running(engine: Engine) -> None:
    """node.cycle runs the guard on a finished cycle, on a failed one and on one a killed
    process left (before closing it as interrupted), each while its status is still "running":
    no report or notice takes a running cycle, so none carries one the guard has not seen."""
    from node import cycle
    from node.attribution.attributor import Attributor
    from node.matching.matcher import MatchIndex
    from tests.node.test_cycle import FakeCrawler, FakeFunction

    seen: dict[int, str] = {}

    def guard(cycle_id: int) -> int:
        with Session(engine) as session:
            row = session.get(CrawlCycle, cycle_id)
            assert row is not None
            seen[cycle_id] = row.status
        return 7

    left, _ = cycle.resume_or_start(engine, "other seeds")  # a process "died" in it
    with Attributor() as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=FakeCrawler([]),
            function=FakeFunction({}),
            index=MatchIndex.from_db(engine),
            attributor=attributor,
            seeds=["http://a.test/"],
            run_key="seeds",
            guard=guard,
        )
        assert summary.status == "done" and summary.held == 7
        with pytest.raises(cycle.CycleError):
            await cycle.run(
                engine=engine,
                crawler=FakeCrawler(
                    [PageFetched("http://a.test/", "a.test", 200, 0)], fail_after=0
                ),
                function=FakeFunction({}),
                index=MatchIndex.from_db(engine),
                attributor=attributor,
                seeds=["http://a.test/"],
                guard=guard,
            )
    with Session(engine) as session:
        rows = session.exec(select(CrawlCycle)).all()
        statuses = {r.id: r.status for r in rows if r.id is not None}
    assert seen == {cid: "running" for cid in statuses}  # all three, each while running
    assert statuses == {left: "interrupted", summary.cycle_id: "done", max(statuses): "failed"}
