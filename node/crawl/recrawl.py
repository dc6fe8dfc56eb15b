"""Re-crawls of known hotspots on their own intervals (``[[crawl.recrawl]]``, `libra node serve`).

Each entry is a start URL and an interval. A re-crawl is an ordinary crawl cycle whose only seed
is that URL (so removals and moves -- the waterbed effect -- show up between full cycles). It
takes the node's crawl lock like any cycle: when a full cycle is running, the re-crawl is
skipped and logged, and runs again on its next interval.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import Engine

from node.attribution.attributor import Attributor
from node.config import NodeSettings

RECRAWL_JOB_PREFIX = "recrawl:"


def recrawl_jobs(
    settings: NodeSettings, engine: Engine, console: Console, attributor: Attributor | None = None
) -> list[tuple[str, float, Callable[[], Awaitable[None]]]]:
    """(job id, interval minutes, coroutine function) for every configured hotspot;
    ``attributor``: the one `serve` opened at start (None: each re-crawl opens its own)."""
    from node.cycle import CycleError
    from node.service import CrawlBusy, crawl_once

    jobs: list[tuple[str, float, Callable[[], Awaitable[None]]]] = []
    for entry in settings.crawl.recrawl:
        focused = settings.model_copy(update={"seeds": [entry.url]})

        async def job(focused: NodeSettings = focused, url: str = entry.url) -> None:
            try:
                summary = await crawl_once(focused, engine, attributor=attributor)
            except (CrawlBusy, CycleError) as exc:
                console.print(f"[yellow]re-crawl of {escape(url)} skipped:[/] {escape(str(exc))}")
                return
            console.print(
                f"re-crawl {escape(url)}: cycle {summary.cycle_id} {summary.status}, "
                f"{summary.pages_fetched} pages, {summary.matches} matches"
            )

        jobs.append((f"{RECRAWL_JOB_PREFIX}{entry.url}", entry.every_minutes, job))
    return jobs


def first_run(now: datetime, minutes: float) -> datetime:
    """Re-crawls start one interval after `serve` starts (the full cycle runs at once)."""
    return now + timedelta(minutes=minutes)
