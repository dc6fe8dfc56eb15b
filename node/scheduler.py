"""`libra node serve`: crawl cycles and reports on fixed intervals (APScheduler).

Both jobs start at once and then repeat; a job never overlaps itself (max_instances=1) and
missed runs collapse into one (coalesce). A failing job is logged and retried on its next
interval: the node keeps serving. A report the coordinator could not take now, with a
``Retry-After``, is sent again then (at least RETRY_MIN_S later, at the latest on the next
report run), not an interval later. The report job runs at least once per report period, so a
node on 5-minute periods reports near real time whatever ``schedule.report_minutes`` says.

The attributor (GeoIP/ASN databases, operator table) is opened once by `serve` and shared by
every cycle. Each cycle prints one line with its counts, the reasons of its failures and the
page budget; a cycle that could fetch no page or analyse no image says so in red.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped,import-not-found,unused-ignore]
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import Engine

from node.attribution.attributor import Attributor, GeoDatabaseError
from node.config import NodeSettings
from node.crawl.budget import budget_reached, describe_budget
from node.crawl.crawler import CrawlStats
from node.crawl.recrawl import first_run, recrawl_jobs
from node.cycle import CycleError, CycleSummary, breakdown
from node.federation.outbox import FlushResult
from node.federation.reporter import PERIOD_LENGTHS
from node.keys.files import KeyFileError
from node.notices.schedule import notices_jobs  # issue 7
from node.retention import scheduled_job  # issue 7
from node.service import CrawlBusy, CrawlWatch, crawl_once, flush_outbox, report_once

CRAWL_JOB = "crawl"
REPORT_JOB = "report"
RETENTION_JOB = "retention"  # issue 7
RETRY_JOB = "report-retry"  # a one-off flush at the coordinator's Retry-After
RETRY_MIN_S = 5.0  # never sooner, whatever the coordinator says


def cycle_lines(
    summary: CycleSummary, crawled: CrawlStats | None, settings: NodeSettings
) -> list[str]:
    """The cycle's line (rich markup), and a red one when it measured nothing."""
    pages = f"{summary.pages_fetched} pages"
    if summary.pages_failed:
        pages += f" ({summary.pages_failed} failed: {breakdown(summary.page_failures)})"
    images = f"{summary.images_hashed} images"
    if summary.analysis_failures:
        images += f" ({summary.analysis_failures} failed: {breakdown(summary.image_failures)})"
    line = (
        f"crawl cycle {summary.cycle_id} {summary.status}: {pages}, "
        f"{summary.pages_robots_skipped} skipped by robots.txt, {images}, "
        f"{summary.matches} matches"
    )
    if crawled is not None and budget_reached(crawled):
        limits = settings.crawl
        line += "; page budget " + describe_budget(
            crawled, limits.max_pages, limits.max_pages_per_site
        )
    lines = [escape(line)]
    if summary.pages_fetched == 0 and summary.pages_failed:
        lines.append(f"[red]crawl cycle {summary.cycle_id} could fetch no page[/]")
    elif summary.nothing_analysed:
        lines.append(
            f"[red]crawl cycle {summary.cycle_id} could analyse no image:[/] check that the "
            f"function at {escape(settings.function_url)} runs and accepts this node's key"
        )
    return lines


def _jobs(
    settings: NodeSettings,
    engine: Engine,
    console: Console,
    attributor: Attributor | None,
    scheduler: AsyncIOScheduler,
) -> dict[str, Any]:
    async def crawl_job() -> None:
        watch = CrawlWatch()
        try:
            summary = await crawl_once(settings, engine, attributor=attributor, watch=watch)
        except (CrawlBusy, CycleError, GeoDatabaseError) as exc:
            console.print(f"[red]crawl failed:[/] {escape(str(exc))}")
            return
        crawled = watch.stats if watch.frontier_known else None
        for line in cycle_lines(summary, crawled, settings):
            console.print(line, highlight=False)

    def after_flush(queued: int, result: FlushResult) -> None:
        for rejection in result.rejected:
            console.print(
                f"[bold red]REJECTED[/] report {rejection.report_id}: "
                f"{escape(rejection.code)}: {escape(rejection.message)}"
            )
        console.print(
            f"reports: {queued} queued, {len(result.delivered)} delivered, "
            f"{len(result.pending)} still queued, {len(result.rejected)} rejected"
        )
        if result.pending and result.retry_after_s is not None:
            delay = min(
                max(result.retry_after_s, RETRY_MIN_S), report_interval_minutes(settings) * 60
            )
            when = datetime.now(UTC) + timedelta(seconds=delay)
            scheduler.add_job(retry_job, "date", run_date=when, id=RETRY_JOB, replace_existing=True)
            console.print(
                f"reports: the coordinator asked to wait; sending again at {when:%H:%M:%S}Z"
            )

    async def report_job() -> None:
        try:
            run = await report_once(settings, engine)
        except KeyFileError as exc:
            console.print(f"[red]report failed:[/] {escape(str(exc))}")
            return
        after_flush(len(run.queued), run.flushed)

    async def retry_job() -> None:
        after_flush(0, await flush_outbox(settings, engine))

    return {CRAWL_JOB: crawl_job, REPORT_JOB: report_job}


def report_interval_minutes(settings: NodeSettings) -> float:
    """``schedule.report_minutes``, shortened to the report period when that is shorter."""
    period = PERIOD_LENGTHS[settings.report.period].total_seconds() / 60
    return min(settings.schedule.report_minutes, period)


def build_scheduler(
    settings: NodeSettings,
    engine: Engine,
    console: Console | None = None,
    attributor: Attributor | None = None,
) -> AsyncIOScheduler:
    """The scheduler with its jobs (not started). ``attributor``: the open one every crawl
    cycle shares (None: each cycle opens its own)."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    jobs = _jobs(settings, engine, console or Console(), attributor, scheduler)
    now = datetime.now(UTC)
    minutes = {
        CRAWL_JOB: settings.schedule.crawl_minutes,
        REPORT_JOB: report_interval_minutes(settings),
    }
    for job_id, func in jobs.items():
        scheduler.add_job(
            func,
            "interval",
            minutes=minutes[job_id],
            id=job_id,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    # issue 5: hotspots re-crawled on their own intervals (node/crawl/recrawl.py).
    for job_id, every, func in recrawl_jobs(settings, engine, console or Console(), attributor):
        scheduler.add_job(
            func,
            "interval",
            minutes=every,
            id=job_id,
            next_run_time=first_run(now, every),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    # issue 7: notices re-check / re-notice / delivery (node/notices/schedule.py), when enabled.
    for job_id, every, func in notices_jobs(settings, engine, console or Console()):
        scheduler.add_job(
            func,
            "interval",
            minutes=every,
            id=job_id,
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    # issue 7: retention (node/retention.py); first run shortly after start, so a node that is
    # restarted more often than run_minutes still erases on time.
    out = console or Console()
    scheduler.add_job(
        scheduled_job(engine, settings.retention, lambda text: out.print(escape(text))),
        "interval",
        minutes=settings.retention.run_minutes,
        id=RETENTION_JOB,
        next_run_time=now + timedelta(minutes=5),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    return scheduler


async def run_forever(
    settings: NodeSettings,
    engine: Engine,
    console: Console,
    attributor: Attributor | None = None,
) -> None:
    scheduler = build_scheduler(settings, engine, console, attributor)
    scheduler.start()
    try:
        await asyncio.Event().wait()  # until cancelled (Ctrl-C / SIGTERM)
    finally:
        scheduler.shutdown(wait=False)
