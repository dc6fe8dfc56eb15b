"""The crawl cycle with a batching function client (issue 17): images already waiting go to the
function together, every image is dispatched and recorded exactly once, a client bug in a
batch fails only that batch's images, and the outcome equals the one-at-a-time cycle's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from node import cycle
from node.attribution.attributor import Attributor
from node.crawl.crawler import ImageFound
from node.dispatch import AnalyzeFailure
from node.matching.matcher import MatchIndex
from node.models import AnalysisFailure, Sighting
from protocol.models import HashResult
from tests.node.conftest import hash_result, image_hashes, write_geoip
from tests.node.test_cycle import Event, FakeCrawler, FakeFunction, world


class BatchingFunction(FakeFunction):
    """FakeFunction with ``analyze_batch``; records every batch it is given."""

    def __init__(
        self, answers: dict[str, HashResult | AnalyzeFailure | Exception], fail: str = ""
    ) -> None:
        super().__init__(answers)
        self.batches: list[list[str]] = []
        self.fail = fail  # a URL whose batch raises (a client bug)

    async def analyze_batch(
        self, urls: Sequence[str], *, dihedral: bool = False
    ) -> list[HashResult | AnalyzeFailure]:
        self.batches.append(list(urls))
        await asyncio.sleep(0.01)
        if self.fail in urls:
            raise RuntimeError("client bug")
        out: list[HashResult | AnalyzeFailure] = []
        for url in urls:
            self.calls.append((url, dihedral))
            answer = self.answers[url]
            out.append(
                AnalyzeFailure(url, "client_error", "x", None)
                if isinstance(answer, Exception)
                else answer
            )
        return out


async def _run(
    engine: Engine, function: FakeFunction, events: list[Event], index: MatchIndex, batch: int
) -> cycle.CycleSummary:
    with Attributor() as attributor:
        return await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=function,
            index=index,
            attributor=attributor,
            seeds=["http://a.test/"],
            concurrency=2,
            batch_size=batch,
        )


async def test_waiting_images_go_in_batches_each_exactly_once(engine: Engine) -> None:
    rng = random.Random(21)
    urls = [f"http://a.test/{i}.png" for i in range(60)]
    events: list[Event] = [ImageFound(u, "http://a.test/", "a.test") for u in urls]
    function = BatchingFunction({u: hash_result(u, image_hashes(rng)) for u in urls})
    summary = await _run(engine, function, events, MatchIndex([]), batch=16)
    assert sorted(u for u, _ in function.calls) == sorted(urls)  # each image once
    assert summary.images_hashed == 60 and summary.analysis_failures == 0
    assert max(len(b) for b in function.batches) > 1  # the crawler ran ahead: batches formed
    assert all(len(b) <= 16 for b in function.batches)


async def test_batching_gives_the_one_at_a_time_outcome(engine: Engine, tmp_path: Path) -> None:
    events, answers, index = world(engine)
    # The world's client bug (6.png raises) stays a per-image failure in the fake's batches.
    function = BatchingFunction(answers)
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        summary = await cycle.run(
            engine=engine,
            crawler=FakeCrawler(events),
            function=function,
            index=index,
            attributor=attributor,
            seeds=["http://a.test/", "http://b.test/"],
            concurrency=2,
            batch_size=8,
        )
    assert (summary.images_found, summary.images_hashed, summary.analysis_failures) == (6, 4, 2)
    assert summary.matches == 3
    with Session(engine) as session:
        sightings = {s.url for s in session.exec(select(Sighting)).all()}
    assert sightings == {"http://a.test/1.png", "http://b.test/3.png", "http://b.test/4.png"}


async def test_a_client_bug_fails_only_its_batch(engine: Engine) -> None:
    rng = random.Random(22)
    urls = [f"http://a.test/{i}.png" for i in range(40)]
    events: list[Event] = [ImageFound(u, "http://a.test/", "a.test") for u in urls]
    function = BatchingFunction({u: hash_result(u, image_hashes(rng)) for u in urls}, urls[5])
    summary = await _run(engine, function, events, MatchIndex([]), batch=8)
    broken = next(b for b in function.batches if urls[5] in b)
    assert summary.analysis_failures == len(broken) and summary.images_hashed == 40 - len(broken)
    with Session(engine) as session:
        failed = {f.url: f.code for f in session.exec(select(AnalysisFailure)).all()}
    assert failed == dict.fromkeys(broken, "client_error")


async def test_batch_size_one_sends_one_image_per_request(engine: Engine) -> None:
    rng = random.Random(23)
    urls = [f"http://a.test/{i}.png" for i in range(10)]
    events: list[Event] = [ImageFound(u, "http://a.test/", "a.test") for u in urls]
    function = BatchingFunction({u: hash_result(u, image_hashes(rng)) for u in urls})
    summary = await _run(engine, function, events, MatchIndex([]), batch=1)
    assert function.batches == [] and summary.images_hashed == 10
