from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import cycle
from node.attribution.attributor import Attributor
from node.crawl.crawler import ImageFound, PageFailed, PageFetched
from node.cycle import CycleError, CycleStats, mark_interrupted
from node.dispatch import AnalyzeFailure
from node.lists import ImportedRecord, import_records
from node.matching.matcher import Match, MatchIndex
from node.models import (
    AnalysedImage,
    AnalysisFailure,
    CrawlCycle,
    HostPages,
    ListEntry,
    Sighting,
)
from protocol.hashes import HashFamily
from protocol.models import HashResult, ImageHashes
from tests.node.conftest import flip_bits, hash_result, image_hashes, write_geoip

Event = PageFetched | PageFailed | ImageFound


class FakeCrawler:
    def __init__(self, events: list[Event], fail_after: int | None = None) -> None:
        self.events = events
        self.fail_after = fail_after
        self.seeds: list[str] = []

    async def crawl(self, seeds: Sequence[str]) -> AsyncIterator[Event]:
        self.seeds = list(seeds)
        for n, event in enumerate(self.events):
            if self.fail_after is not None and n == self.fail_after:
                raise RuntimeError("crawler bug")
            await asyncio.sleep(0)
            yield event


class FakeFunction:
    def __init__(self, answers: dict[str, HashResult | AnalyzeFailure | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, bool]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def analyze(self, url: str, *, dihedral: bool = False) -> HashResult | AnalyzeFailure:
        self.calls.append((url, dihedral))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            answer = self.answers[url]
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.in_flight -= 1


class Recorder:
    def __init__(self) -> None:
        self.updates = 0
        self.last: CycleStats | None = None

    def update(self, stats: CycleStats) -> None:
        self.updates += 1
        self.last = stats


def world(
    engine: Engine,
) -> tuple[list[Event], dict[str, HashResult | AnalyzeFailure | Exception], MatchIndex]:
    """Four list entries (ids 1-4, in this order) and a small crawl over two hosts."""
    rng = random.Random(11)
    listed_exact = image_hashes(rng)
    listed_pdq = image_hashes(rng)
    both = image_hashes(rng)
    entries = [
        ImportedRecord(HashFamily.MD5, listed_exact.md5, 1),
        ImportedRecord(HashFamily.PDQ, flip_bits(listed_pdq.pdq, [3, 9, 27]), 2),
        ImportedRecord(HashFamily.PDQ, both.pdq, 3),
        ImportedRecord(HashFamily.SHA1, both.sha1, 4),
    ]
    import_records(engine, entries, source="t", version="1", format_name="test")
    with Session(engine) as session:
        ids = {e.value: e.id for e in session.exec(select(ListEntry)).all()}
    assert [ids[e.value] for e in entries] == [1, 2, 3, 4]
    index = MatchIndex.from_db(engine)
    events: list[Event] = [
        PageFetched("http://a.test/", "a.test", 200, 0),
        ImageFound("http://a.test/1.png", "http://a.test/", "a.test"),
        ImageFound("http://a.test/2.png", "http://a.test/", "a.test"),
        ImageFound("http://a.test/1.png", "http://a.test/p2", "a.test"),  # again: dispatched once
        PageFetched("http://a.test/p2", "a.test", 200, 1),
        PageFailed("http://a.test/gone", "a.test", "http_404"),
        PageFetched("http://b.test/", "b.test", 200, 0),
        ImageFound("http://b.test/3.png", "http://b.test/", "b.test"),
        ImageFound("http://b.test/4.png", "http://b.test/", "b.test"),
        ImageFound("http://b.test/5.png", "http://b.test/", "b.test"),
        ImageFound("http://b.test/6.png", "http://b.test/", "b.test"),
        PageFailed("http://c.test/", "c.test", "timeout"),
    ]
    answers: dict[str, HashResult | AnalyzeFailure | Exception] = {
        "http://a.test/1.png": hash_result("http://a.test/1.png", listed_exact, "127.0.1.5"),
        "http://a.test/2.png": hash_result("http://a.test/2.png", image_hashes(rng), "127.0.1.5"),
        "http://b.test/3.png": hash_result(
            "http://b.test/3.png", listed_pdq, "127.0.9.9", final_url="http://cdn.test/3.png"
        ),
        "http://b.test/4.png": hash_result("http://b.test/4.png", both, "127.0.2.8"),
        "http://b.test/5.png": AnalyzeFailure("http://b.test/5.png", "not_an_image", "html", 415),
        "http://b.test/6.png": RuntimeError("client bug"),
    }
    return events, answers, index


async def test_cycle_records_sightings_failures_and_counts(engine: Engine, tmp_path: Path) -> None:
    events, answers, index = world(engine)
    crawler = FakeCrawler(events)
    function = FakeFunction(answers)
    recorder = Recorder()
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=crawler,
            function=function,
            index=index,
            attributor=attributor,
            seeds=["http://a.test/", "http://b.test/"],
            concurrency=3,
            dihedral=True,
            progress=recorder,
        )
    assert crawler.seeds == ["http://a.test/", "http://b.test/"]
    assert sorted(url for url, _ in function.calls) == sorted(answers)
    assert all(dihedral for _, dihedral in function.calls)
    assert (summary.status, summary.pages_fetched, summary.pages_failed) == ("done", 3, 2)
    assert (summary.images_found, summary.images_hashed, summary.analysis_failures) == (6, 4, 2)
    assert (summary.matches, summary.hosts_seen) == (3, 2)
    assert recorder.updates > 0 and recorder.last is not None and recorder.last.matches == 3

    with Session(engine) as session:
        row = session.get(CrawlCycle, summary.cycle_id)
        assert row is not None and row.status == "done" and row.finished_at is not None
        assert (row.pages_fetched, row.images_hashed, row.matches, row.hosts_seen) == (3, 4, 3, 2)
        sightings = {s.url: s for s in session.exec(select(Sighting)).all()}
        hosts = {h.host: h for h in session.exec(select(HostPages)).all()}
        failures = {f.url: f.code for f in session.exec(select(AnalysisFailure)).all()}
        analysed = session.exec(select(AnalysedImage)).all()
    assert set(sightings) == {"http://a.test/1.png", "http://b.test/3.png", "http://b.test/4.png"}
    exact = sightings["http://a.test/1.png"]
    assert (exact.family, exact.entry_id, exact.distance) == ("md5", 1, 0)
    assert (exact.country, exact.asn, exact.hoster) == ("DE", 64500, "Hoster A")
    near = sightings["http://b.test/3.png"]
    assert (near.family, near.entry_id, near.distance, near.final_url) == (
        "pdq",
        2,
        3,
        "http://cdn.test/3.png",
    )
    assert (near.country, near.asn, near.hoster) == ("ZZ", 0, "unknown")  # IP not in the db
    best = sightings["http://b.test/4.png"]
    assert (best.family, best.entry_id) == ("sha1", 4)  # sha1 beats pdq
    assert (best.country, best.hoster) == ("NL", "Hoster B")
    assert failures == {
        "http://b.test/5.png": "not_an_image",
        "http://b.test/6.png": "client_error",
    }
    assert {h: (c.pages_fetched, c.pages_failed, c.images_found) for h, c in hosts.items()} == {
        "a.test": (2, 1, 2),
        "b.test": (1, 0, 4),
        "c.test": (0, 1, 0),
    }
    assert len(analysed) == 4
    assert {a.url: a.entry_id for a in analysed}["http://a.test/2.png"] is None


async def test_dispatch_concurrency_is_bounded(engine: Engine) -> None:
    rng = random.Random(12)
    urls = [f"http://a.test/{i}.png" for i in range(30)]
    events: list[Event] = [ImageFound(u, "http://a.test/", "a.test") for u in urls]
    function = FakeFunction({u: hash_result(u, image_hashes(rng)) for u in urls})
    with Attributor() as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=function,
            index=MatchIndex([]),
            attributor=attributor,
            seeds=["http://a.test/"],
            concurrency=4,
        )
    assert summary.images_hashed == 30 and summary.matches == 0
    assert 1 < function.max_in_flight <= 4


async def test_crawler_error_marks_cycle_failed(engine: Engine) -> None:
    events, answers, index = world(engine)
    with Attributor() as attributor, pytest.raises(CycleError, match="crawler bug"):
        await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events, fail_after=3),
            function=FakeFunction(answers),
            index=index,
            attributor=attributor,
            seeds=["http://a.test/"],
        )
    with Session(engine) as session:
        (row,) = session.exec(select(CrawlCycle)).all()
    assert row.status == "failed" and row.error and "crawler bug" in row.error
    assert row.pages_fetched == 1 and row.finished_at is not None


def test_mark_interrupted(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(CrawlCycle(status="running"))
        session.add(CrawlCycle(status="done"))
    assert mark_interrupted(engine) == 1
    with Session(engine) as session:
        statuses = sorted(c.status for c in session.exec(select(CrawlCycle)).all())
    assert statuses == ["done", "interrupted"]


def test_resume_or_start_continues_only_a_cycle_of_the_same_seeds(engine: Engine) -> None:
    first, resumed = cycle.resume_or_start(engine, "seeds-a")
    assert not resumed  # nothing left running: a new cycle
    again, resumed = cycle.resume_or_start(engine, "seeds-a")  # the process "died"
    assert (again, resumed) == (first, True)
    other, resumed = cycle.resume_or_start(engine, "seeds-b")
    assert other != first and not resumed
    with Session(engine) as session:
        statuses = {c.id: c.status for c in session.exec(select(CrawlCycle)).all()}
    assert statuses == {first: "interrupted", other: "running"}


class CountingIndex(MatchIndex):
    """Records the size of every match_many call the cycle makes."""

    def __init__(self, entries: list[tuple[int, HashFamily | str, str]]) -> None:
        super().__init__(entries)
        self.batches: list[int] = []

    def match_many(self, images: Sequence[ImageHashes]) -> list[list[Match]]:
        self.batches.append(len(images))
        return super().match_many(images)


async def test_results_are_matched_in_batches(engine: Engine) -> None:
    rng = random.Random(13)
    listed = [image_hashes(rng) for _ in range(5)]
    # Five PDQ entries; images 0, 7, 14, ... are near copies of them.
    records = [
        ImportedRecord(HashFamily.PDQ, flip_bits(h.pdq, [n, 100 + n]), n + 1)
        for n, h in enumerate(listed)
    ]
    import_records(engine, records, source="t", version="1", format_name="test")
    with Session(engine) as session:
        index = CountingIndex(
            [(e.id or 0, e.family, e.value) for e in session.exec(select(ListEntry)).all()]
        )
    urls = [f"http://a.test/{i}.png" for i in range(40)]
    images = {u: image_hashes(rng) for u in urls}
    for i in range(0, 40, 7):
        images[urls[i]] = listed[(i // 7) % 5]
    function = FakeFunction({u: hash_result(u, images[u]) for u in urls})
    events: list[Event] = [ImageFound(u, "http://a.test/", "a.test") for u in urls]
    with Attributor() as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=function,
            index=index,
            attributor=attributor,
            seeds=["http://a.test/"],
            concurrency=8,
        )
    # Every result was matched exactly once, most of them several per call.
    assert sum(index.batches) == summary.images_hashed == 40
    assert len(index.batches) < 40 and max(index.batches) > 1
    with Session(engine) as session:
        sightings = {s.url: (s.entry_id, s.distance) for s in session.exec(select(Sighting))}
        analysed = session.exec(select(AnalysedImage)).all()
    expected = {u: index.best(images[u]) for u in urls}
    assert sightings == {u: (m.entry_id, m.distance) for u, m in expected.items() if m}
    assert len(sightings) == summary.matches == 6
    assert {a.url: a.entry_id for a in analysed} == {
        u: (m.entry_id if m else None) for u, m in expected.items()
    }
