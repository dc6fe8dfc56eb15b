"""`libra node serve`: crawl cycles and reports on fixed intervals (APScheduler).

Both jobs start at once and then repeat; a job never overlaps itself (max_instances=1) and
missed runs collapse into one (coalesce). A failing job is logged and retried on its next
interval: the node keeps serving. The report job runs at least once per report period, so a
node on 5-minute periods reports near real time whatever ``schedule.report_minutes`` says.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped,import-not-found,unused-ignore]
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import Engine

from node.attribution.attributor import GeoDatabaseError
from node.config import NodeSettings
from node.crawl.recrawl import first_run, recrawl_jobs
from node.cycle import CycleError
from node.federation.reporter import PERIOD_LENGTHS
from node.keys.files import KeyFileError
from node.notices.schedule import notices_jobs  # issue 7
from node.retention import scheduled_job  # issue 7
from node.service import CrawlBusy, crawl_once, report_once

CRAWL_JOB = "crawl"
REPORT_JOB = "report"
RETENTION_JOB = "retention"  # issue 7


def _jobs(settings: NodeSettings, engine: Engine, console: Console) -> dict[str, Any]:
    async def crawl_job() -> None:
        try:
            summary = await crawl_once(settings, engine)
        except (CrawlBusy, CycleError, GeoDatabaseError) as exc:
            console.print(f"[red]crawl failed:[/] {escape(str(exc))}")
            return
        console.print(
            f"crawl cycle {summary.cycle_id} {summary.status}: {summary.pages_fetched} pages, "
            f"{summary.images_hashed} images, {summary.matches} matches"
        )

    async def report_job() -> None:
        try:
            run = await report_once(settings, engine)
        except KeyFileError as exc:
            console.print(f"[red]report failed:[/] {escape(str(exc))}")
            return
        result = run.flushed
        for rejection in result.rejected:
            console.print(
                f"[bold red]REJECTED[/] report {rejection.report_id}: "
                f"{escape(rejection.code)}: {escape(rejection.message)}"
            )
        console.print(
            f"reports: {len(run.queued)} queued, {len(result.delivered)} delivered, "
            f"{len(result.pending)} still queued, {len(result.rejected)} rejected"
        )

    return {CRAWL_JOB: crawl_job, REPORT_JOB: report_job}


def report_interval_minutes(settings: NodeSettings) -> float:
    """``schedule.report_minutes``, shortened to the report period when that is shorter."""
    period = PERIOD_LENGTHS[settings.report.period].total_seconds() / 60
    return min(settings.schedule.report_minutes, period)


def build_scheduler(
    settings: NodeSettings, engine: Engine, console: Console | None = None
) -> AsyncIOScheduler:
    """The scheduler with its two jobs (not started)."""
    jobs = _jobs(settings, engine, console or Console())
    scheduler = AsyncIOScheduler(timezone=UTC)
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
    for job_id, every, func in recrawl_jobs(settings, engine, console or Console()):
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


async def run_forever(settings: NodeSettings, engine: Engine, console: Console) -> None:
    scheduler = build_scheduler(settings, engine, console)
    scheduler.start()
    try:
        await asyncio.Event().wait()  # until cancelled (Ctrl-C / SIGTERM)
    finally:
        scheduler.shutdown(wait=False)
