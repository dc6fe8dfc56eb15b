"""One crawl cycle: crawl the seeds, hash every image found, match, attribute, record.

The crawler and the function client are parameters (anything with their shape), so the cycle
is tested with fakes and run for real with node.crawl.crawler.Crawler and
node.dispatch.FunctionClient.

Each distinct image URL is dispatched once per cycle; a matching image becomes exactly one
Sighting (its strongest match). Only the matched list entry and distance are stored for an
analysed image, never the hash values the function returned.

Resume: every analysed image URL is recorded (CycleImage) in the same transaction as its
sighting or failure. A cycle left "running" by a killed process is continued (same cycle row)
by the next run over the same seed list (same run_key); its analysed images are neither sent
again nor counted again, so a cycle holds at most one sighting per image URL and is reported
once, when it finishes. Only an image whose analysis was in flight at the kill, or whose result
was waiting to be recorded or in the batch being recorded, is sent twice.

Matching and recording are batched (issue 17): one recorder task takes every function result
waiting (up to MATCH_BATCH), matches them with one MatchIndex.match_many call and records them
all in ONE transaction (their CycleImage, AnalysedImage, Sighting and snapshot rows, or
AnalysisFailure rows): a transaction per image cost more than hashing a small image. The
batch commits whole or not at all, so each image is still recorded with its CycleImage row or
not at all, and a kill loses at most the batch in flight (its images are analysed again).

Effort is attributed like sightings (issue 16): every hashed image is placed (country, ASN,
hoster) at record time by the same attributor call a sighting of it gets, and stored with its
AnalysedImage row (so a resumed cycle keeps its count); every fetched page is placed by the
address that served it (the crawler's pinned connection; unknown when there is none) and the
pages per hoster are written when the cycle ends. Timestamps come from ``clock`` (node.clock).

Discovery (issue 14, optional ``discovery``: a node.discovery.collect.CandidateCollector): a
match whose image is on the negative list (rejected by an analyst) is no sighting (its
AnalysedImage row keeps no entry; counted in ``suppressed``). Every hashed item is handed to
the collector once its batch is committed (a few dictionary updates per item); the candidates
are scored and written when the cycle ends, in the transaction that closes the cycle row, so
a killed cycle loses the candidates it had collected (never counts one twice).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from node.attribution.attributor import Attribution, Attributor, host_of
from node.attribution.snapshot import record_sighting, snapshot_id
from node.clock import Clock, real_clock
from node.crawl.crawler import ImageFound, PageFailed, PageFetched
from node.crawl.links import storable_url  # data: URIs are stored as a digest, never as bytes
from node.dispatch import AnalyzeFailure
from node.matching.matcher import Match, MatchIndex
from node.matching.media_match import best_matches
from node.matching.video_index import VideoIndex
from node.models import (
    RUNNING,
    AnalysedImage,
    AnalysisFailure,
    CrawlCycle,
    CycleImage,
    CycleRun,
    HosterPages,
    HostPages,
    Sighting,
)
from protocol.models import HashResult

if TYPE_CHECKING:  # imported by the caller that builds it (node.service)
    from node.discovery.collect import CandidateCollector

logger = logging.getLogger(__name__)

CrawlEvent = PageFetched | PageFailed | ImageFound
Outcome = tuple[ImageFound, HashResult | AnalyzeFailure]
# Most function results matched by one MatchIndex.match_many call.
MATCH_BATCH = 256
# An unexpected exception from the function client is recorded under this code, not fatal.
CLIENT_ERROR = "client_error"
# The crawler's PageFailed reason for a page robots.txt does not allow: the page was skipped by
# our own rule, not lost, so it is counted apart from the failures (never in pages_failed).
ROBOTS_DISALLOWED = "robots_disallowed"


class CrawlerLike(Protocol):
    def crawl(self, seeds: list[str]) -> AsyncIterator[CrawlEvent]: ...


class FunctionLike(Protocol):
    async def analyze(self, url: str, *, dihedral: bool = False) -> HashResult | AnalyzeFailure: ...


@dataclass
class _Host:
    pages_fetched: int = 0
    pages_failed: int = 0
    images_found: int = 0


@dataclass
class CycleStats:
    """Running counts, shown by the progress display and saved on the cycle row."""

    pages_fetched: int = 0
    pages_failed: int = 0
    pages_robots_skipped: int = 0
    # images_found/images_hashed count every item sent/hashed, videos included (a hashed video
    # is one analysed item, docs/protocol.md); videos_found/videos_hashed are the video part.
    images_found: int = 0
    images_hashed: int = 0
    analysis_failures: int = 0
    matches: int = 0
    videos_found: int = 0
    videos_hashed: int = 0
    # Issue 14: matches whose image is on the negative list (not sightings).
    suppressed: int = 0
    hosts: dict[str, _Host] = field(default_factory=dict)
    # Why: failed pages per crawler reason, failed images per function error code.
    page_failures: Counter[str] = field(default_factory=Counter)
    image_failures: Counter[str] = field(default_factory=Counter)

    @property
    def hosts_seen(self) -> int:
        return sum(1 for h in self.hosts.values() if h.pages_fetched > 0)

    @property
    def images_done(self) -> int:
        return self.images_hashed + self.analysis_failures


@dataclass(frozen=True)
class CycleSummary:
    cycle_id: int
    status: str
    started_at: datetime
    finished_at: datetime
    pages_fetched: int
    pages_failed: int
    images_found: int
    images_hashed: int
    analysis_failures: int
    matches: int
    hosts_seen: int
    pages_robots_skipped: int = 0
    page_failures: Mapping[str, int] = field(default_factory=dict)
    image_failures: Mapping[str, int] = field(default_factory=dict)
    # Of images_found / images_hashed: the videos (issue 13).
    videos_found: int = 0
    videos_hashed: int = 0
    # Issue 14: new candidates written; matches suppressed by the negative list; sightings
    # the flood guard held (``run(guard=...)``: node.service.flood_guard).
    candidates: int = 0
    suppressed: int = 0
    held: int = 0

    @property
    def nothing_analysed(self) -> bool:
        """Images were found but not one could be hashed (e.g. the function is unreachable)."""
        return self.images_found > 0 and self.images_hashed == 0


def breakdown(counts: Mapping[str, int]) -> str:
    """``timeout 7, blocked_address 5``: most frequent first, ties by name."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{reason} {count}" for reason, count in ranked if count)


class CycleError(Exception):
    """The cycle stopped on an unexpected error (the cycle row is marked failed)."""


class ProgressSink(Protocol):
    def update(self, stats: CycleStats) -> None: ...


class RichCycleProgress:
    """A live rich display of pages, images and matches while a cycle runs."""

    def __init__(
        self,
        max_pages: int,
        console: Console | None = None,
        known_pages: Callable[[], int | None] | None = None,
    ) -> None:
        # known_pages (issue 17, H3): the page URLs the crawler has scheduled so far (None:
        # unknown). With it the pages total is that, capped by max_pages, growing as links are
        # found (a budget of a million is no total); without it, max_pages.
        self._max_pages = max_pages
        self._known_pages = known_pages
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            console=console,
            transient=False,
        )
        first = None if known_pages is not None else max_pages
        self._pages = self._progress.add_task("pages", total=first, extra="")
        self._images = self._progress.add_task("images", total=0, extra="")
        self._matches = self._progress.add_task("matches", total=None, extra="")

    def __enter__(self) -> RichCycleProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._known_pages is not None:
            # The crawl is over: what was done is the whole (scheduled URLs that were images
            # or sitemaps end in no page event).
            task = next(t for t in self._progress.tasks if t.id == self._pages)
            self._progress.update(self._pages, total=task.completed)
        self._progress.stop()

    def update(self, stats: CycleStats) -> None:
        done = stats.pages_fetched + stats.pages_failed + stats.pages_robots_skipped
        known = self._known_pages() if self._known_pages is not None else self._max_pages
        self._progress.update(
            self._pages,
            total=None if known is None else max(done, min(known, self._max_pages)),
            completed=done,
            extra=f"{stats.pages_failed} failed, {stats.pages_robots_skipped} robots.txt, "
            f"{stats.hosts_seen} hosts",
        )
        self._progress.update(
            self._images,
            total=stats.images_found,
            completed=stats.images_done,
            extra=f"{stats.analysis_failures} failed",
        )
        self._progress.update(self._matches, completed=stats.matches, extra="")


class _Cycle:
    def __init__(
        self,
        engine: Engine,
        cycle_id: int,
        function: FunctionLike,
        index: MatchIndex,
        attributor: Attributor,
        dihedral: bool,
        progress: ProgressSink | None,
        analysed: set[str] | None = None,
        clock: Clock = real_clock,
        videos: VideoIndex | None = None,
        discovery: CandidateCollector | None = None,
    ) -> None:
        self.engine = engine
        # Issue 14: fed every hashed item; None: discovery is off (no negative list either).
        self.discovery = discovery
        self.candidates = 0  # new candidates written when the cycle ended
        # Listed videos (vpdq entries); None: the node lists none, no video is matched by vPDQ
        # and no image by a frame.
        self.videos = videos
        self.clock = clock
        # Pages fetched per (country, ASN, hoster) of the address that served them.
        self.hoster_pages: Counter[tuple[str, int, str]] = Counter()
        # storable_url of every image already analysed in this cycle (before a kill).
        self.analysed = analysed if analysed is not None else set()
        self.cycle_id = cycle_id
        self.function = function
        self.index = index
        self.attributor = attributor
        self.dihedral = dihedral
        self.progress = progress
        self.stats = CycleStats()
        self._snapshot: int | None = None  # issue 7: attribution snapshot of this cycle
        self.batch_size = 1  # images per function request (run() sets it)

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.update(self.stats)

    def _host(self, host: str) -> _Host:
        return self.stats.hosts.setdefault(host, _Host())

    async def produce(
        self,
        crawler: CrawlerLike,
        seeds: list[str],
        queue: asyncio.Queue[ImageFound | None],
        workers: int,
    ) -> None:
        seen: set[str] = set()
        async for event in crawler.crawl(seeds):
            if isinstance(event, PageFetched):
                self.stats.pages_fetched += 1
                self._host(event.host).pages_fetched += 1
                where = self.attributor.lookup(event.server_ip, event.served_host or event.host)
                self.hoster_pages[(where.country, where.asn, where.hoster)] += 1
            elif isinstance(event, PageFailed) and event.reason == ROBOTS_DISALLOWED:
                self.stats.pages_robots_skipped += 1
            elif isinstance(event, PageFailed):
                self.stats.pages_failed += 1
                self.stats.page_failures[event.reason] += 1
                self._host(event.host).pages_failed += 1
            elif isinstance(event, ImageFound) and event.url not in seen:
                seen.add(event.url)
                if storable_url(event.url) in self.analysed:
                    continue  # analysed before the process was killed: counted already
                self.stats.images_found += 1
                self.stats.videos_found += event.media == "video"
                self._host(event.host).images_found += 1
                self._tick()
                await queue.put(event)  # bounded: back-pressure on the crawler
            self._tick()
        for _ in range(workers):
            await queue.put(None)

    async def work(
        self, queue: asyncio.Queue[ImageFound | None], done: asyncio.Queue[Outcome | None]
    ) -> None:
        """One dispatcher: takes an image and, with a batching client, whatever else is already
        waiting (up to ``batch_size``, never waiting for more): batches when the crawler is
        ahead of the function, one image at a time when it is not, so no image waits."""
        batch = getattr(self.function, "analyze_batch", None) if self.batch_size > 1 else None
        last = False
        while not last and (image := await queue.get()) is not None:
            images = [image]
            while batch is not None and len(images) < self.batch_size and not queue.empty():
                more = queue.get_nowait()
                if more is None:  # the producer's end mark: this worker stops after the batch
                    last = True
                    break
                images.append(more)
            results: list[HashResult | AnalyzeFailure]
            try:
                if batch is not None and len(images) > 1:
                    results = await batch([i.url for i in images], dihedral=self.dihedral)
                else:
                    results = [await self.function.analyze(image.url, dihedral=self.dihedral)]
            except Exception as exc:  # a client bug must not end the cycle
                results = [
                    AnalyzeFailure(i.url, CLIENT_ERROR, f"{type(exc).__name__}", None)
                    for i in images
                ]
            for found, result in zip(images, results, strict=True):
                await done.put((found, result))
        await done.put(None)

    async def record(self, done: asyncio.Queue[Outcome | None], workers: int) -> None:
        """The one writer: takes every function result waiting (up to MATCH_BATCH), matches
        their hashes in one batched call and records them in one transaction."""
        finished = 0
        while finished < workers:
            batch = [await done.get()]
            while len(batch) < MATCH_BATCH and not done.empty():
                batch.append(done.get_nowait())
            outcomes = [item for item in batch if item is not None]
            finished += len(batch) - len(outcomes)
            if outcomes:
                self.record_batch(outcomes)
                self._tick()

    def record_batch(self, outcomes: Sequence[Outcome]) -> None:
        """Record ``outcomes`` in ONE transaction: each image's CycleImage row with its
        AnalysedImage (and Sighting with its snapshot row) or AnalysisFailure, so an image is
        recorded with its CycleImage row or not at all and a kill loses at most this batch.
        The counts move only once the transaction is committed.

        The plain rows are inserted as one executemany each (building an ORM object per row
        cost more than the insert); only sightings, rare, are ORM objects (their ids are
        needed for their snapshot rows)."""
        results = [r for _, r in outcomes if isinstance(r, HashResult)]
        hashed = [r.hashes for r in results]
        found_matches = self._match(results)
        suppressed = self._suppress(results, found_matches)
        matches = iter(found_matches)
        # (image, storable URL, result, matched, attribution) for the collector, after commit
        seen: list[tuple[ImageFound, str, HashResult, bool, Attribution]] = []
        images: list[dict[str, object]] = []
        analysed: list[dict[str, object]] = []
        failed: list[dict[str, object]] = []
        sightings: list[tuple[Sighting, str | None]] = []
        failures: Counter[str] = Counter()
        for image, result in outcomes:
            url = storable_url(image.url)
            now = self.clock()
            if isinstance(result, HashResult):
                images.append(
                    {
                        "cycle_id": self.cycle_id,
                        "url": url,
                        "outcome": "hashed",
                        "media": image.media,
                    }
                )
                matched = next(matches)
                # One attribution for the image and its sighting: coverage and cells agree.
                where = self.attributor.lookup(result.server_ip, host_of(result.final_url))
                found = self._hashed_rows(url, result, matched, where, now, analysed)
                if found is not None:
                    sightings.append(found)
                if self.discovery is not None:
                    seen.append((image, url, result, matched is not None, where))
                continue
            failures[result.code] += 1
            images.append(
                {"cycle_id": self.cycle_id, "url": url, "outcome": "failed", "media": image.media}
            )
            failed.append(
                {
                    "cycle_id": self.cycle_id,
                    "url": url,
                    "code": result.code,
                    "message": result.message[:500],
                    "http_status": result.http_status,
                    "failed_at": now,
                }
            )
        with Session(self.engine) as session, session.begin():
            for table, rows in (
                (CycleImage, images),
                (AnalysedImage, analysed),
                (AnalysisFailure, failed),
            ):
                if rows:
                    session.execute(insert(table), rows)
            if sightings:
                session.add_all(sighting for sighting, _ in sightings)
                # issue 7: which database versions placed each sighting (attribution.snapshot)
                session.flush()
                if self._snapshot is None:
                    first = sightings[0][0].seen_at
                    self._snapshot = snapshot_id(session, self.attributor.sources(), first)
                for sighting, operator_id in sightings:
                    assert sighting.id is not None
                    record_sighting(session, sighting.id, self._snapshot, operator_id)
        self.stats.images_hashed += len(hashed)
        self.stats.videos_hashed += sum(r.video is not None for r in results)
        self.stats.analysis_failures += failures.total()
        self.stats.image_failures.update(failures)
        self.stats.matches += len(sightings)
        self.stats.suppressed += suppressed
        if self.discovery is not None:
            add = self.discovery.add
            for item in seen:
                add(*item)

    def _suppress(
        self, results: Sequence[HashResult], matches: list[tuple[Match, str] | None]
    ) -> int:
        """Drop (in place) the matches of images on the negative list; how many were dropped.

        Only images: a rejected candidate is an image, and a video's best frame equal to it is
        not the same item."""
        if self.discovery is None or not len(self.discovery.negative):
            return 0
        rows = [n for n, m in enumerate(matches) if m is not None and results[n].video is None]
        if not rows:
            return 0
        negative = self.discovery.negative.suppressed_many([results[n].hashes for n in rows])
        dropped = 0
        for n, hit in zip(rows, negative, strict=True):
            if hit:
                matches[n] = None
                dropped += 1
        return dropped

    def _match(self, results: Sequence[HashResult]) -> list[tuple[Match, str] | None]:
        """The strongest match of each result with the report family its sighting is stored
        under (a ReportFamily value), or None (node.matching.media_match, shared with the
        notices' re-check so both apply the same rules).

        An image: the image index (MatchIndex.match_many), else a frame of a listed video
        (``vpdq-frame``). A video: its bytes' digests against the index's exact families
        (``video-sha256`` > ``video-sha1`` > ``video-md5``), else vPDQ against the listed videos.
        A video never goes through the image index's perceptual families: its best frame's PDQ
        matching a listed IMAGE would be a finding of another kind, not reported as "pdq"."""
        return best_matches(self.index, self.videos, results)

    def _hashed_rows(
        self,
        url: str,
        result: HashResult,
        matched: tuple[Match, str] | None,
        where: Attribution,
        now: datetime,
        analysed: list[dict[str, object]],
    ) -> tuple[Sighting, str | None] | None:
        """Add a hashed image's AnalysedImage row to ``analysed``; its Sighting (with its
        operator) when it matched (``matched``: the match and its report family), both placed
        at ``where``."""
        match = matched[0] if matched is not None else None
        # (vpdq and vpdq-frame matches carry HashFamily.PDQ in Match.family, unused here: the
        # sighting's family is the report family beside it.)
        analysed.append(
            {
                "cycle_id": self.cycle_id,
                "url": url,
                "final_url": result.final_url,
                "server_ip": result.server_ip,
                "analysed_at": now,
                "entry_id": match.entry_id if match else None,
                "distance": match.distance if match else None,
                "country": where.country,
                "asn": where.asn,
                "hoster": where.hoster,
            }
        )
        if matched is None:
            return None
        match, family = matched
        sighting = Sighting(
            cycle_id=self.cycle_id,
            url=url,
            final_url=result.final_url,
            server_ip=result.server_ip,
            country=where.country,
            asn=where.asn,
            hoster=where.hoster,
            family=family,
            entry_id=match.entry_id,
            distance=match.distance,
            seen_at=now,
            method=match.method.value,
        )
        return sighting, where.operator_id

    def finish(self, status: str, error: str | None) -> CycleSummary:
        finished = self.clock()
        stats = self.stats
        with Session(self.engine) as session, session.begin():
            row = session.get(CrawlCycle, self.cycle_id)
            assert row is not None
            row.status = status
            row.error = error
            row.finished_at = finished
            row.pages_fetched = stats.pages_fetched
            row.pages_failed = stats.pages_failed
            row.images_found = stats.images_found
            row.images_hashed = stats.images_hashed
            row.analysis_failures = stats.analysis_failures
            row.matches = stats.matches
            row.hosts_seen = stats.hosts_seen
            row.videos_found = stats.videos_found
            row.videos_hashed = stats.videos_hashed
            row.suppressed = stats.suppressed
            if status == "done" and self.discovery is not None:
                row.candidates = self.candidates = self._write_candidates(session, finished)
            session.add(row)
            for host, counts in sorted(stats.hosts.items()):
                session.add(
                    HostPages(
                        cycle_id=self.cycle_id,
                        host=host,
                        pages_fetched=counts.pages_fetched,
                        pages_failed=counts.pages_failed,
                        images_found=counts.images_found,
                    )
                )
            for (country, asn, hoster), pages in sorted(self.hoster_pages.items()):
                session.add(
                    HosterPages(
                        cycle_id=self.cycle_id,
                        country=country,
                        asn=asn,
                        hoster=hoster,
                        pages_fetched=pages,
                    )
                )
            started = row.started_at
        return CycleSummary(
            cycle_id=self.cycle_id,
            status=status,
            started_at=started,
            finished_at=finished,
            pages_fetched=stats.pages_fetched,
            pages_failed=stats.pages_failed,
            images_found=stats.images_found,
            images_hashed=stats.images_hashed,
            analysis_failures=stats.analysis_failures,
            matches=stats.matches,
            hosts_seen=stats.hosts_seen,
            pages_robots_skipped=stats.pages_robots_skipped,
            page_failures=dict(stats.page_failures),
            image_failures=dict(stats.image_failures),
            videos_found=stats.videos_found,
            videos_hashed=stats.videos_hashed,
            candidates=self.candidates,
            suppressed=stats.suppressed,
        )

    def _write_candidates(self, session: Session, now: datetime) -> int:
        """The collector's candidates, in the cycle's closing transaction (a savepoint: a
        failure here loses the candidates, logged, not the cycle's sightings)."""
        assert self.discovery is not None
        try:
            with session.begin_nested():
                return self.discovery.finish(session, self.cycle_id, now).created
        except Exception:
            logger.exception("cycle %s: its candidates could not be written", self.cycle_id)
            return 0


INTERRUPTED = "interrupted"


def _close_interrupted(session: Session, row: CrawlCycle, now: datetime) -> None:
    """Mark a cycle a dead process left running as interrupted, with the counts its recorded
    images hold (its in-memory page counts died with it), so that its sightings are reported
    with the images hashed they were found among."""
    assert row.id is not None
    _urls, stats = _analysed_in(session, row.id)
    row.status = INTERRUPTED
    row.finished_at = now
    row.error = "the crawling process died before the cycle finished"
    row.images_found = stats.images_found
    row.images_hashed = stats.images_hashed
    row.analysis_failures = stats.analysis_failures
    row.matches = stats.matches
    row.videos_found = stats.videos_found
    row.videos_hashed = stats.videos_hashed
    session.add(row)


# Issue 14: the flood guard (node.service.flood_guard): given a cycle whose sightings are all
# recorded, it holds those of flooding entries and returns how many it held.
Guard = Callable[[int], int]


def _close(engine: Engine, cycle_ids: Sequence[int], clock: Clock, guard: Guard | None) -> None:
    """Close ``cycle_ids`` as interrupted; the guard checks each first, while it is still
    "running": no report or notice takes a running cycle, so none sees it unchecked."""
    for cycle_id in cycle_ids:
        if guard is not None:
            guard(cycle_id)
    with Session(engine) as session, session.begin():
        for cycle_id in cycle_ids:
            row = session.get(CrawlCycle, cycle_id)
            assert row is not None
            _close_interrupted(session, row, clock())


def mark_interrupted(engine: Engine, clock: Clock = real_clock, guard: Guard | None = None) -> int:
    """Close cycles left "running" by a process that died, so they can be reported.

    Only call this while holding the node's crawl lock (no other cycle can be running).
    """
    with Session(engine) as session:
        stale = session.exec(select(CrawlCycle.id).where(col(CrawlCycle.status) == RUNNING)).all()
    _close(engine, [cid for cid in stale if cid is not None], clock, guard)
    return len(stale)


def _start_cycle(engine: Engine, run_key: str | None = None, clock: Clock = real_clock) -> int:
    with Session(engine) as session, session.begin():
        row = CrawlCycle(started_at=clock())
        session.add(row)
        session.flush()
        assert row.id is not None
        if run_key is not None:
            session.add(CycleRun(cycle_id=row.id, run_key=run_key))
        return row.id


def resume_or_start(
    engine: Engine, run_key: str, clock: Clock = real_clock, guard: Guard | None = None
) -> tuple[int, bool]:
    """The cycle to run over the seed list ``run_key``: the newest cycle a dead process left
    "running" over the same seeds (resumed: True), else a new one. Every other cycle left
    running is marked interrupted. Only call this while holding the node's crawl lock.
    """
    with Session(engine) as session:
        stale = session.exec(
            select(CrawlCycle.id, CycleRun.run_key)
            .join(CycleRun, col(CycleRun.cycle_id) == col(CrawlCycle.id), isouter=True)
            .where(col(CrawlCycle.status) == RUNNING)
            .order_by(col(CrawlCycle.id).desc())
        ).all()
    resumed = next((cid for cid, key in stale if key == run_key and cid is not None), None)
    if resumed is None:
        mark_interrupted(engine, clock, guard)
        return _start_cycle(engine, run_key, clock), False
    others = [cid for cid, _key in stale if cid is not None and cid != resumed]
    _close(engine, others, clock, guard)
    return resumed, True


def _analysed_so_far(engine: Engine, cycle_id: int) -> tuple[set[str], CycleStats]:
    """The image URLs a resumed cycle has analysed already and the counts they contributed."""
    with Session(engine) as session:
        return _analysed_in(session, cycle_id)


def _analysed_in(session: Session, cycle_id: int) -> tuple[set[str], CycleStats]:
    stats = CycleStats()
    urls = set(
        session.exec(select(CycleImage.url).where(col(CycleImage.cycle_id) == cycle_id)).all()
    )
    hashed = select(func.count()).where(col(AnalysedImage.cycle_id) == cycle_id)
    failed = (
        select(AnalysisFailure.code, func.count())
        .where(col(AnalysisFailure.cycle_id) == cycle_id)
        .group_by(col(AnalysisFailure.code))
    )
    matched = select(func.count()).where(col(Sighting.cycle_id) == cycle_id)
    stats.images_hashed = int(session.exec(hashed).one())
    stats.image_failures.update({code: int(n) for code, n in session.exec(failed).all()})
    stats.analysis_failures = stats.image_failures.total()
    stats.matches = int(session.exec(matched).one())
    stats.images_found = len(urls)
    videos = (
        select(CycleImage.outcome, func.count())
        .where(col(CycleImage.cycle_id) == cycle_id, col(CycleImage.media) == "video")
        .group_by(col(CycleImage.outcome))
    )
    by_outcome = {outcome: int(n) for outcome, n in session.exec(videos).all()}
    stats.videos_found = sum(by_outcome.values())
    stats.videos_hashed = by_outcome.get("hashed", 0)
    return urls, stats


async def run(
    *,
    engine: Engine,
    crawler: CrawlerLike,
    function: FunctionLike,
    index: MatchIndex,
    attributor: Attributor,
    seeds: list[str],
    concurrency: int = 8,
    dihedral: bool = False,
    progress: ProgressSink | None = None,
    run_key: str | None = None,
    clock: Clock = real_clock,
    batch_size: int = 1,
    videos: VideoIndex | None = None,
    discovery: CandidateCollector | None = None,
    guard: Guard | None = None,
) -> CycleSummary:
    """Run one cycle to the end and return its summary (also saved on the cycle row).

    With ``run_key`` (the crawler's key of the seed list; hold the node's crawl lock), a cycle a
    killed process left running over the same seeds is continued instead of starting a new one.
    ``clock`` gives every timestamp the cycle records (node.clock: a lab clock under ``--at``).
    ``batch_size`` > 1: a function client with ``analyze_batch`` gets up to that many waiting
    images per request (issue 17). ``videos``: the listed videos (node.matching.video_lists)
    that fetched videos are matched against by vPDQ and images by a single frame (issue 13).
    ``discovery``: the collector of candidates with its negative list (issue 14; None: off).
    ``guard``: the flood guard (issue 14), run on the cycle once all its sightings are recorded
    and before it stops being "running" (and on every cycle closed as interrupted, before it is
    closed), so no report or notice ever takes a cycle it has not checked.
    """
    if run_key is None:
        cycle_id, resumed = _start_cycle(engine, clock=clock), False
    else:
        cycle_id, resumed = resume_or_start(engine, run_key, clock, guard)
    analysed: set[str] = set()
    restored = CycleStats()
    if resumed:
        analysed, restored = _analysed_so_far(engine, cycle_id)
    cycle = _Cycle(
        engine,
        cycle_id,
        function,
        index,
        attributor,
        dihedral,
        progress,
        analysed,
        clock,
        videos,
        discovery,
    )
    cycle.stats = restored
    cycle.batch_size = max(1, batch_size)
    workers = max(1, concurrency)
    # Room for every worker's next batch: the crawler runs ahead while the function works.
    queue: asyncio.Queue[ImageFound | None] = asyncio.Queue(
        maxsize=workers * max(4, cycle.batch_size)
    )
    done: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=MATCH_BATCH)
    guarded = False
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(cycle.record(done, workers))
            for _ in range(workers):
                group.create_task(cycle.work(queue, done))
            group.create_task(cycle.produce(crawler, seeds, queue, workers))
        guarded = True
        held = guard(cycle_id) if guard is not None else 0
    except BaseException as exc:
        first: BaseException = exc
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        message = f"{type(first).__name__}: {first}"
        if guard is not None and not guarded:  # a failed cycle's sightings are reported too
            try:
                guard(cycle_id)
            except Exception:
                logger.exception("cycle %s failed and its flood guard too", cycle_id)
                message += "; the flood guard failed too (see the log)"
        cycle.finish("failed", message[:1000])
        if isinstance(exc, Exception):
            raise CycleError(message) from first
        raise
    summary = replace(cycle.finish("done", None), held=held)
    cycle._tick()
    return summary
