"""The node's operations wired from settings: one crawl cycle, one report run.

The CLI commands and the scheduler of ``serve`` both call these, so a scheduled run does
exactly what the operator's manual run does.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from node.attribution.attributor import Attributor, open_operator_table
from node.clock import Clock, real_clock
from node.config import NodeSettings, lab_of
from node.crawl.crawler import Crawler, CrawlStats, seeds_run_key
from node.crawl.setup import make_crawler, open_frontier  # crawler, limits, frontier backend
from node.crawl.worker import RedisCrawler
from node.cycle import CycleSummary, Guard, ProgressSink, run
from node.db import make_engine
from node.discovery.collect import CandidateCollector
from node.discovery.flood import hold_floods
from node.discovery.negative import NegativeIndex
from node.dispatch import FunctionClient, load_request_signer
from node.federation import outbox
from node.federation.reporter import QueuedReport, pending_periods, period_containing, queue_report
from node.keys.files import load_federation_key, load_signing_key
from node.keys.list_encryption import ListKey, load_list_key
from node.matching.index.persist import current as persisted_index
from node.matching.matcher import Thresholds
from node.matching.video_lists import video_index_from_db, vpdq_settings
from node.net import make_client
from protocol.models import Period, utcnow

CRAWL_LOCK_FILE = "crawl.lock"


class CrawlBusy(Exception):
    """Another crawl cycle of this node is running (one at a time per node)."""


@contextmanager
def crawl_lock(data_dir: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock per node data dir; released when the process dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / CRAWL_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CrawlBusy(f"another crawl of this node is running ({data_dir})") from exc
        yield
    finally:
        os.close(fd)


def open_engine(settings: NodeSettings) -> Engine:
    """The node database, with list values encrypted under the node's list key.

    Raises ListKeyError (clear message) when the key is missing or wrong: the node does not
    start without it.
    """
    return make_engine(settings.effective_database_url, list_key_of(settings))


def list_key_of(settings: NodeSettings) -> ListKey:
    return load_list_key(settings.list_key_path)


def open_attributor(settings: NodeSettings) -> Attributor:
    """The node's attributor: its GeoIP/ASN databases and operator table, opened now.

    Raises GeoDatabaseError (clear message) for a configured file that cannot be opened.
    `serve` opens it once at start (and refuses to start without it); a foreground crawl
    opens its own. Close it (or use it as a context manager) when done.
    """
    operators = open_operator_table(settings.attribution.operators_file)
    return Attributor(settings.geoip.country_db, settings.geoip.asn_db, operators)


class CrawlWatch:
    """The crawler's live counters (node.crawl.crawler.CrawlStats) of the cycle a caller runs,
    for a progress display and the summary: pages known so far, pages a budget left out,
    examples of failures. Empty until the cycle's crawler exists."""

    def __init__(self) -> None:
        self._crawler: Crawler | RedisCrawler | None = None

    def attach(self, crawler: Crawler | RedisCrawler) -> None:
        self._crawler = crawler

    @property
    def stats(self) -> CrawlStats:
        """The latest counters (the crawler replaces its stats when its crawl starts)."""
        return self._crawler.stats if self._crawler is not None else CrawlStats()

    @property
    def frontier_known(self) -> bool:
        """True when ``pages_scheduled`` counts pages ahead of their events (the in-process
        crawler); the Redis crawler counts pages only as their events arrive."""
        return isinstance(self._crawler, Crawler)

    def pages_known(self) -> int:
        """Page URLs scheduled so far: the seeds and every link admitted (within the budget)."""
        return self.stats.pages_scheduled


def discovery_of(settings: NodeSettings, engine: Engine) -> CandidateCollector | None:
    """The cycle's candidate collector with the negative list as it is now (issue 14); None
    when ``[discovery] enabled = false``."""
    found = settings.discovery
    if not found.enabled:
        return None
    negative = NegativeIndex.from_db(engine, found.cluster_max_distance)
    return CandidateCollector(found, negative, max_kept=found.max_kept)


def thresholds(settings: NodeSettings) -> Thresholds:
    m = settings.match
    return Thresholds(
        pdq_max_distance=m.pdq_max_distance,
        pdq_min_quality=m.pdq_min_quality,
        phash_max_distance=m.phash_max_distance,
        dhash_max_distance=m.dhash_max_distance,
    )


async def crawl_once(
    settings: NodeSettings,
    engine: Engine,
    *,
    progress: ProgressSink | None = None,
    clock: Clock = real_clock,
    attributor: Attributor | None = None,
    watch: CrawlWatch | None = None,
) -> CycleSummary:
    """One crawl cycle over the configured seeds with the real crawler and function client;
    ``clock`` stamps what it records (node.clock: a lab clock under ``--at``).

    ``attributor``: an open one to use (``serve`` opens it once; it stays open), else the
    cycle opens and closes its own (GeoDatabaseError when it cannot). ``watch`` is given the
    cycle's crawler, so the caller can read its counters live and after the cycle.
    """
    with crawl_lock(settings.data_dir):
        # run() continues a cycle a killed process left running over the same seeds and marks
        # any other cycle left running as interrupted.
        return await _crawl(settings, engine, progress, clock, attributor, watch)


def flood_guard(settings: NodeSettings, engine: Engine, clock: Clock = real_clock) -> Guard:
    """The cycle's flood guard (issue 14, node.discovery.flood): holds the sightings of every
    list entry that matched far more than its history, and returns how many. node.cycle.run
    calls it on a cycle once its sightings are recorded and before it stops being "running"
    (and on a cycle a killed process left, before closing it as interrupted): no report or
    notice takes a running cycle, so none ever carries one the guard has not checked."""

    def guard(cycle_id: int) -> int:
        return sum(h.held for h in hold_floods(engine, cycle_id, settings.discovery, clock))

    return guard


async def _crawl(
    settings: NodeSettings,
    engine: Engine,
    progress: ProgressSink | None,
    clock: Clock,
    shared: Attributor | None,
    watch: CrawlWatch | None,
) -> CycleSummary:
    crawl = settings.crawl
    index = persisted_index(engine, settings.index_dir, list_key_of(settings), thresholds(settings))
    # issue 13: the listed videos, rebuilt each cycle (None, at the cost of one query, when the
    # node lists no vpdq entry)
    videos = video_index_from_db(engine, vpdq_settings(settings.match))
    # issue 7: the operator table overrides GeoIP (node/attribution/operators.py)
    opened: AbstractContextManager[Attributor] = (
        nullcontext(shared) if shared is not None else open_attributor(settings)
    )
    with opened as attributor:
        client = make_client(
            lab_of(settings),
            timeout=crawl.timeout_s,
            user_agent=crawl.user_agent,
            max_connections=max(crawl.concurrency * 2, 8),
        )
        function = FunctionClient(
            settings.function_url,
            concurrency=settings.dispatch.concurrency,
            retries=settings.dispatch.retries,
            timeout_s=settings.dispatch.timeout_s,
            auth=load_request_signer(settings.node_id, settings.function_key_file),
            batch_size=settings.dispatch.batch_size,
        )
        frontier = open_frontier(settings)
        try:
            crawler = make_crawler(settings, client, frontier, engine)
            if watch is not None:
                watch.attach(crawler)
            return await run(
                engine=engine,
                crawler=crawler,
                function=function,
                index=index,
                attributor=attributor,
                seeds=list(settings.seeds),
                concurrency=settings.dispatch.concurrency,
                dihedral=settings.match.dihedral,
                progress=progress,
                run_key=seeds_run_key(settings.seeds),
                clock=clock,
                batch_size=settings.dispatch.batch_size,
                videos=videos,
                discovery=discovery_of(settings, engine),
                guard=flood_guard(settings, engine, clock),
            )
        finally:
            frontier.close()
            await function.aclose()
            await client.aclose()


@dataclass(frozen=True)
class ReportRun:
    queued: list[QueuedReport]
    flushed: outbox.FlushResult


def default_period(settings: NodeSettings, now: datetime | None = None) -> Period:
    return period_containing(now or utcnow(), settings.report.period)


def build_and_queue(
    settings: NodeSettings,
    engine: Engine,
    period: Period | None = None,
    *,
    now: datetime | None = None,
) -> list[QueuedReport]:
    """Queue the report for ``period``; without one, a report for every earlier period that
    still holds unreported cycles, then one for the current period (sent even when empty).

    ``now`` (a lab's ``--at``) only decides which period is current and which are past; each
    report's created_at is the real time it is signed."""
    key = load_signing_key(settings.signing_key_path)
    federation_key = load_federation_key(settings.federation_key_path)
    if period is not None:
        periods = [period]
    else:
        current = default_period(settings, now)
        periods = [*pending_periods(engine, settings.report.period, until=current.start), current]
    return [
        queue_report(
            engine,
            node_id=settings.node_id,
            key=key,
            federation_key=federation_key,
            period=p,
        )
        for p in periods
    ]


async def flush_outbox(
    settings: NodeSettings,
    engine: Engine,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> outbox.FlushResult:
    return await outbox.flush(
        engine,
        settings.coordinator_url,
        timeout_s=settings.report.timeout_s,
        transport=transport,
    )


async def report_once(
    settings: NodeSettings,
    engine: Engine,
    period: Period | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    now: datetime | None = None,
) -> ReportRun:
    """Build, sign and queue the report(s), then flush the whole outbox."""
    queued = build_and_queue(settings, engine, period, now=now)
    flushed = await flush_outbox(settings, engine, transport=transport)
    return ReportRun(queued=queued, flushed=flushed)
