"""Batched recording (issue 17): the cycle's recorder writes each batch of outcomes in ONE
transaction, all of it or none of it, and a cycle killed mid-batch is resumed counting each
image once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, event, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import cycle
from node.attribution.attributor import Attribution, Attributor
from node.crawl.crawler import ImageFound
from node.dispatch import AnalyzeFailure
from node.matching.matcher import MatchIndex
from node.models import (
    RUNNING,
    AnalysedImage,
    AnalysisFailure,
    CrawlCycle,
    CycleImage,
    HosterPages,
    HostPages,
    Sighting,
    SightingAttribution,
)
from protocol.models import HashResult
from tests.node.conftest import hash_result, image_hashes, write_geoip
from tests.node.test_cycle import Event, FakeCrawler, FakeFunction, world


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing in the cycle may catch it)."""


class KillingAttributor(Attributor):
    """Dies while placing ``fatal`` (inside the recorder's transaction)."""

    def __init__(self, fatal: str | None) -> None:
        super().__init__()
        self.fatal = fatal

    def lookup(self, ip: str | None, domain: str | None = None) -> Attribution:
        if self.fatal is not None and domain == self.fatal.split("/")[2]:
            raise Killed
        return super().lookup(ip, domain)


@pytest.fixture
def commits(engine: Engine) -> Iterator[list[int]]:
    """One entry per committed transaction on ``engine``."""
    seen: list[int] = []

    def on_commit(_connection: object) -> None:
        seen.append(1)

    event.listen(engine, "commit", on_commit)
    yield seen
    event.remove(engine, "commit", on_commit)


def _outcomes(
    answers: dict[str, HashResult | AnalyzeFailure | Exception],
) -> list[cycle.Outcome]:
    out: list[cycle.Outcome] = []
    for url, answer in answers.items():
        if isinstance(answer, Exception):
            continue
        host = url.split("/")[2]
        out.append((ImageFound(url, f"http://{host}/", host), answer))
    return out


def test_a_batch_with_a_match_a_failure_and_a_plain_hash_is_one_transaction(
    engine: Engine, tmp_path: Path, commits: list[int]
) -> None:
    _events, answers, index = world(engine)
    outcomes = _outcomes(answers)  # 2 exact/near matches + 1 best-of-two, 1 plain, 1 failure
    cycle_id = cycle._start_cycle(engine)
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        recorder = cycle._Cycle(engine, cycle_id, FakeFunction({}), index, attributor, False, None)
        commits.clear()
        recorder.record_batch(outcomes)
    assert len(commits) == 1  # every row of the five images in one transaction
    stats = recorder.stats
    assert (stats.images_hashed, stats.analysis_failures, stats.matches) == (4, 1, 3)
    assert dict(stats.image_failures) == {"not_an_image": 1}
    with Session(engine) as session:
        images = {c.url: c.outcome for c in session.exec(select(CycleImage))}
        analysed = {a.url: a.entry_id for a in session.exec(select(AnalysedImage))}
        failed = {f.url: f.code for f in session.exec(select(AnalysisFailure))}
        sightings = {s.url: s for s in session.exec(select(Sighting))}
        placed = session.exec(select(SightingAttribution)).all()
    assert images == {
        "http://a.test/1.png": "hashed",
        "http://a.test/2.png": "hashed",
        "http://b.test/3.png": "hashed",
        "http://b.test/4.png": "hashed",
        "http://b.test/5.png": "failed",
    }
    assert analysed == {
        "http://a.test/1.png": 1,
        "http://a.test/2.png": None,  # the plain hash: recorded, no sighting
        "http://b.test/3.png": 2,
        "http://b.test/4.png": 4,
    }
    assert failed == {"http://b.test/5.png": "not_an_image"}
    assert {u: s.entry_id for u, s in sightings.items()} == {
        "http://a.test/1.png": 1,
        "http://b.test/3.png": 2,
        "http://b.test/4.png": 4,
    }
    # Each sighting points at the one attribution snapshot of the cycle.
    assert {p.sighting_id for p in placed} == {s.id for s in sightings.values()}
    assert len({p.snapshot_id for p in placed}) == 1
    assert sightings["http://a.test/1.png"].hoster == "Hoster A"


def test_a_batch_that_fails_midway_records_nothing_and_counts_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    _events, answers, index = world(engine)
    outcomes = _outcomes(answers)
    cycle_id = cycle._start_cycle(engine)
    with KillingAttributor("http://b.test/4.png") as attributor:
        recorder = cycle._Cycle(engine, cycle_id, FakeFunction({}), index, attributor, False, None)
        with pytest.raises(Killed):
            recorder.record_batch(outcomes)
    # Images before the failing one (a.test/1, a.test/2, b.test/3) were added to the session,
    # but the batch is all or nothing.
    with Session(engine) as session:
        for table in (CycleImage, AnalysedImage, AnalysisFailure, Sighting, SightingAttribution):
            assert session.exec(select(table)).all() == [], table.__name__
    stats = recorder.stats
    assert (stats.images_hashed, stats.analysis_failures, stats.matches) == (0, 0, 0)


async def test_a_cycle_killed_mid_batch_resumes_counting_each_image_once(
    engine: Engine, tmp_path: Path
) -> None:
    rng = random.Random(21)
    hosts = [f"h{n}.test" for n in range(6)]
    urls = [f"http://{h}/{i}.png" for h in hosts for i in range(10)]
    answers: dict[str, HashResult | AnalyzeFailure | Exception] = {
        u: hash_result(u, image_hashes(rng)) for u in urls
    }
    for u in urls[::9]:  # a few failures too: they are recorded and counted like hashes
        answers[u] = AnalyzeFailure(u, "upstream_status", "HTTP 404", 404)
    events: list[Event] = [ImageFound(u, u.rsplit("/", 1)[0] + "/", u.split("/")[2]) for u in urls]
    fatal = "http://h4.test/0.png"  # its host's first lookup dies: some batches were recorded

    async def run(attributor: Attributor, function: FakeFunction) -> cycle.CycleSummary:
        return await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=function,
            index=MatchIndex([]),
            attributor=attributor,
            seeds=["http://h0.test/"],
            concurrency=4,
            run_key="seeds",
        )

    first = FakeFunction(answers)
    with KillingAttributor(fatal) as attributor, pytest.raises(BaseExceptionGroup) as died:
        await run(attributor, first)
    assert died.group_contains(Killed)
    # A real kill leaves the cycle running and its page counts unwritten (run() could not mark
    # it failed).
    with Session(engine) as session, session.begin():
        session.execute(update(CrawlCycle).values(status=RUNNING))
        session.execute(delete(HostPages))
        session.execute(delete(HosterPages))
    with Session(engine) as session:
        recorded = set(session.exec(select(CycleImage.url)).all())
        hashed = set(session.exec(select(AnalysedImage.url)).all())
        failed = set(session.exec(select(AnalysisFailure.url)).all())
    assert 0 < len(recorded) < len(urls), "the kill must land mid-cycle"
    assert fatal not in recorded  # its batch was rolled back whole
    assert recorded == hashed | failed and not hashed & failed  # no half-recorded image

    again = FakeFunction(answers)
    with KillingAttributor(None) as attributor:
        summary = await run(attributor, again)
    resent = [url for url, _ in again.calls]
    assert sorted(resent) == sorted(set(urls) - recorded)  # only what the kill lost
    assert summary.images_found == len(urls)
    assert summary.images_hashed + summary.analysis_failures == len(urls)
    assert summary.analysis_failures == len(urls[::9])
    with Session(engine) as session:
        rows = session.exec(select(CycleImage.url)).all()
        (row,) = session.exec(select(CrawlCycle).where(col(CrawlCycle.status) == "done")).all()
    assert sorted(rows) == sorted(urls)  # each image once
    assert (row.images_hashed, row.analysis_failures) == (
        len(urls) - len(urls[::9]),
        len(urls[::9]),
    )
