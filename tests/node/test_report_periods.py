"""Issue 16: report periods of 5 and 15 minutes (near real time), each cycle reported exactly
once; the lab clock drives cycles and reports through many periods in a moment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlmodel import Session, select

from node.clock import LAB_ONLY, LabClockRefused, clock_for, lab_clock, real_clock
from node.config import ConfigError, load_settings
from node.federation.reporter import PERIOD_LENGTHS, period_containing
from node.models import RUNNING, CrawlCycle
from node.scheduler import report_interval_minutes
from node.service import QueuedReport, build_and_queue, open_engine
from protocol.models import Period, utcnow
from tests.node.test_cli import init_node
from tests.node.test_report_theta import crawl_world, import_list, run_cycle

MIDNIGHT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("length", "start", "end"),
    [
        ("5m", "10:40", "10:45"),
        ("15m", "10:30", "10:45"),
        ("hour", "10:00", "11:00"),
        ("day", "00:00", "00:00"),
    ],
)
def test_periods_are_utc_aligned(length: str, start: str, end: str) -> None:
    moment = datetime(2026, 3, 1, 10, 42, 7, tzinfo=UTC)
    period = period_containing(moment, length)  # type: ignore[arg-type]
    assert f"{period.start:%H:%M}" == start and f"{period.end:%H:%M}" == end
    assert period.end - period.start == PERIOD_LENGTHS[length]
    # The same moment in another zone is the same period; the last period of a day ends at
    # the next midnight.
    elsewhere = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert period_containing(elsewhere, length) == period  # type: ignore[arg-type]
    late = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    last = period_containing(late, length)  # type: ignore[arg-type]
    assert last.end == datetime(2026, 3, 2, tzinfo=UTC)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30))]),
    ),
    length=st.sampled_from(sorted(PERIOD_LENGTHS)),
)
def test_every_moment_lies_in_one_aligned_period(moment: datetime, length: str) -> None:
    period = period_containing(moment, length)  # type: ignore[arg-type]
    assert period.start <= moment.replace(microsecond=0) < period.end
    assert period.end - period.start == PERIOD_LENGTHS[length]
    since_midnight = period.start - period.start.replace(hour=0, minute=0, second=0)
    assert since_midnight % PERIOD_LENGTHS[length] == timedelta(0)
    assert period.start.utcoffset() == timedelta(0)


def test_settings_accept_short_periods_and_serve_reports_every_period(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    path = directory / "node.toml"
    text = path.read_text().replace('period = "day"', 'period = "5m"')
    path.write_text(text)
    settings = load_settings(path)
    assert settings.report.period == "5m"
    assert report_interval_minutes(settings) == 5  # report_minutes (60) is longer
    path.write_text(text.replace('period = "5m"', 'period = "2m"'))
    with pytest.raises(ConfigError, match="period"):
        load_settings(path)


def test_the_lab_clock_runs_from_its_moment_and_only_in_a_lab() -> None:
    at = datetime(2026, 3, 1, 10, 1, 30, 500_000, tzinfo=UTC)
    clock = lab_clock(at)
    first, second = clock(), clock()
    assert at.replace(microsecond=0) <= first <= second and first.microsecond == 0
    assert clock_for(None, lab=False) is real_clock
    with pytest.raises(LabClockRefused, match="only accepted in lab mode"):
        clock_for(at, lab=False)
    assert LAB_ONLY.startswith("--at")


async def test_five_minute_periods_report_each_cycle_exactly_once(tmp_path: Path) -> None:
    directory = init_node(tmp_path)
    path = directory / "node.toml"
    path.write_text(path.read_text().replace('period = "day"', 'period = "5m"'))
    settings = load_settings(path)
    engine = open_engine(settings)
    rng = random.Random(5)
    items = import_list(engine, rng)
    events, answers = crawl_world(rng, items)
    at = lambda minutes: MIDNIGHT + timedelta(hours=10, minutes=minutes)  # noqa: E731
    queued: list[QueuedReport] = []
    signed_after = utcnow()

    async def crawl(minutes: float) -> None:
        await run_cycle(engine, tmp_path, events, answers, at=at(minutes))

    await crawl(1)
    queued += build_and_queue(settings, engine, now=at(2))  # the current period 10:00-10:05
    await crawl(3)
    await crawl(6)
    queued += build_and_queue(settings, engine, now=at(7))  # 10:00 again (late cycle), 10:05
    await crawl(11)
    await crawl(12)
    with Session(engine) as session, session.begin():  # the 10:12 cycle is still running
        session.execute(update(CrawlCycle).where(CrawlCycle.id == 5).values(status=RUNNING))
    queued += build_and_queue(settings, engine, now=at(16))  # 10:10 (one cycle), 10:15
    with Session(engine) as session, session.begin():
        session.execute(update(CrawlCycle).where(CrawlCycle.id == 5).values(status="done"))
    queued += build_and_queue(settings, engine, now=at(31))  # 10:10 (the late one), 10:30

    periods = [(f"{q.report.period.start:%H:%M}", q.cycle_ids) for q in queued]
    assert periods == [
        ("10:00", [1]),
        ("10:00", [2]),
        ("10:05", [3]),
        ("10:10", [4]),
        ("10:15", []),
        ("10:10", [5]),
        ("10:30", []),
    ]
    with Session(engine) as session:
        cycles = session.exec(select(CrawlCycle).order_by(CrawlCycle.id)).all()
    by_report = {q.report.report_id: q.report.period for q in queued}
    for row in cycles:
        assert row.report_id in by_report  # reported, and by one report only
        period: Period = by_report[row.report_id]
        assert period.start <= row.started_at < period.end
        assert period.end - period.start == timedelta(minutes=5)
    assert sum(len(q.cycle_ids) for q in queued) == len(cycles) == 5
    # Every report counts its own cycles' matches, nothing twice.
    assert sum(c.matches for q in queued for c in q.report.cells) == 5 * 5
    # The reports are signed now (the real clock), whatever moment the lab plays.
    assert all(q.report.created_at >= signed_after for q in queued)
    engine.dispose()
