from __future__ import annotations

from pathlib import Path

import pytest

from node.config import load_settings
from node.keys.list_encryption import create_list_key
from node.service import CrawlBusy, crawl_lock, default_period, thresholds

CONFIG = """node_id = "node-a"
country = "DE"
seeds = ["http://a.test/"]
[match]
pdq_max_distance = 20
pdq_min_quality = 70
[report]
period = "hour"
[schedule]
crawl_minutes = 30
report_minutes = 7.5
"""


def settings_at(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    settings = load_settings(path)
    create_list_key(settings.list_key_path)  # the node does not start without its list key
    return settings


def test_crawl_lock_allows_one_crawl_per_node(tmp_path: Path) -> None:
    with crawl_lock(tmp_path), pytest.raises(CrawlBusy), crawl_lock(tmp_path):
        pass
    with crawl_lock(tmp_path):  # released again
        pass


def test_thresholds_and_period_from_settings(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    t = thresholds(settings)
    assert (t.pdq_max_distance, t.pdq_min_quality, t.phash_max_distance) == (20, 70, 8)
    period = default_period(settings)
    assert (period.end - period.start).total_seconds() == 3600


def test_scheduler_has_both_jobs_on_their_intervals(tmp_path: Path) -> None:
    pytest.importorskip("apscheduler")
    from node.scheduler import CRAWL_JOB, REPORT_JOB, RETENTION_JOB, build_scheduler
    from node.service import open_engine

    settings = settings_at(tmp_path)
    engine = open_engine(settings)
    scheduler = build_scheduler(settings, engine)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {CRAWL_JOB, REPORT_JOB, RETENTION_JOB}  # retention: issue 7
    assert jobs[RETENTION_JOB].trigger.interval.total_seconds() == 1440 * 60
    assert jobs[CRAWL_JOB].trigger.interval.total_seconds() == 30 * 60
    assert jobs[REPORT_JOB].trigger.interval.total_seconds() == 7.5 * 60
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
    engine.dispose()


async def test_serve_runs_both_jobs_at_start_and_survives_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("apscheduler")
    import asyncio

    from rich.console import Console

    from node import scheduler
    from node.cycle import CycleError
    from node.service import open_engine

    calls: list[str] = []
    done = asyncio.Event()

    async def fake_crawl(settings: object, engine: object, **_: object) -> None:
        calls.append("crawl")
        raise CycleError("site down")

    async def fake_report(settings: object, engine: object) -> object:
        calls.append("report")
        done.set()
        raise scheduler.KeyFileError("no key")

    monkeypatch.setattr(scheduler, "crawl_once", fake_crawl)
    monkeypatch.setattr(scheduler, "report_once", fake_report)
    settings = settings_at(tmp_path)
    console = Console(record=True, width=200)
    task = asyncio.create_task(scheduler.run_forever(settings, open_engine(settings), console))
    await done.wait()  # no deadline of our own: pytest-timeout bounds a hang
    # Until both failures are reported, however slowly this machine gets there.
    while not all(m in console.export_text(clear=False) for m in ("crawl failed", "report failed")):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(calls) == ["crawl", "report"]
    text = console.export_text()
    assert "crawl failed: site down" in text and "report failed: no key" in text


async def test_serve_sends_a_held_report_again_at_the_coordinators_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("apscheduler")
    import asyncio

    from rich.console import Console

    from node import scheduler
    from node.cycle import CycleError
    from node.federation.outbox import FlushResult
    from node.service import ReportRun, open_engine

    flushed = asyncio.Event()

    async def fake_crawl(settings: object, engine: object, **_: object) -> None:
        raise CycleError("not this test")

    async def fake_report(settings: object, engine: object) -> ReportRun:
        return ReportRun(queued=[], flushed=FlushResult(pending=["r1"], retry_after_s=0.0))

    async def fake_flush(settings: object, engine: object) -> FlushResult:
        flushed.set()
        return FlushResult(delivered=["r1"])

    monkeypatch.setattr(scheduler, "crawl_once", fake_crawl)
    monkeypatch.setattr(scheduler, "report_once", fake_report)
    monkeypatch.setattr(scheduler, "flush_outbox", fake_flush)
    monkeypatch.setattr(scheduler, "RETRY_MIN_S", 0.05)
    settings = settings_at(tmp_path)
    console = Console(record=True, width=200)
    task = asyncio.create_task(scheduler.run_forever(settings, open_engine(settings), console))
    await flushed.wait()  # the report interval is 7.5 min: only the retry job gets here
    while "1 delivered" not in console.export_text(clear=False):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    text = console.export_text()
    assert "1 still queued" in text and "sending again at" in text
    assert "0 queued, 1 delivered, 0 still queued" in text
