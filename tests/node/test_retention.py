"""Retention: what is erased, what a pending report or a notice still needs is kept, audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from node import audit
from node.config import RetentionSettings
from node.models import (
    AnalysedImage,
    AnalysisFailure,
    AttributionSnapshot,
    CrawlCycle,
    CycleImage,
    ListEntry,
    ListVersion,
    RdapContact,
    Sighting,
    SightingAttribution,
)
from node.notices import models as n
from node.retention import RULES, run_retention

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)  # past every default retention time
RECENT = NOW - timedelta(days=1)
ANCIENT = NOW - timedelta(days=800)  # past the notices' 730 days
SETTINGS = RetentionSettings()  # sightings 365 d, unmatched/failures 30 d, notices 730 d


def _entry(session: Session) -> int:
    version = ListVersion(source="t", version="1", format="plain")
    session.add(version)
    session.flush()
    entry = ListEntry(family="md5", value="0" * 32, list_version_id=version.id or 0)
    session.add(entry)
    session.flush()
    assert entry.id is not None
    return entry.id


def add_cycle(session: Session, at: datetime, *, reported: bool, tag: str) -> dict[str, int]:
    """A finished cycle with one sighting, one matched and one unmatched image, one failure."""
    entry_id = session.exec(select(ListEntry.id)).first() or _entry(session)
    cycle = CrawlCycle(
        started_at=at,
        finished_at=at + timedelta(minutes=5),
        status="done",
        report_id=f"report-{tag}" if reported else None,
    )
    session.add(cycle)
    session.flush()
    assert cycle.id is not None
    url = f"http://{tag}.test/1.png"
    sighting = Sighting(
        cycle_id=cycle.id,
        url=url,
        final_url=url,
        server_ip="127.0.1.5",
        country="DE",
        asn=64500,
        hoster="Hoster A",
        family="md5",
        entry_id=entry_id,
        distance=0,
        seen_at=at,
    )
    snapshot = session.exec(select(AttributionSnapshot)).first()
    if snapshot is None:
        snapshot = AttributionSnapshot(digest="d", sources="[]")
        session.add(snapshot)
    session.add(sighting)
    session.flush()
    assert sighting.id is not None and snapshot.id is not None
    session.add(SightingAttribution(sighting_id=sighting.id, snapshot_id=snapshot.id))
    session.add(
        AnalysedImage(
            cycle_id=cycle.id, url=url, final_url=url, analysed_at=at, entry_id=entry_id, distance=0
        )
    )
    session.add(
        AnalysedImage(
            cycle_id=cycle.id, url=url + "x", final_url=url + "x", analysed_at=at, entry_id=None
        )
    )
    session.add(AnalysisFailure(cycle_id=cycle.id, url=url + "y", code="timeout", failed_at=at))
    for u, outcome in ((url, "hashed"), (url + "x", "hashed"), (url + "y", "failed")):
        session.add(CycleImage(cycle_id=cycle.id, url=u, outcome=outcome))
    return {"cycle": cycle.id, "sighting": sighting.id}


def add_notice(
    session: Session, *, state: str, ended: datetime | None, removal_reported: bool, tag: str
) -> int:
    entry_id = session.exec(select(ListEntry.id)).one() or 0
    notice = n.Notice(
        country="DE", asn=64500, hoster="Hoster A", state=state, created_at=OLD, closed_at=ended
    )
    session.add(notice)
    session.flush()
    assert notice.id is not None
    url = n.NoticeUrl(
        notice_id=notice.id,
        url=f"http://{tag}.test/n.png",
        entry_id=entry_id,
        family="md5",
        seen_at=OLD,
        first_notice_at=OLD,
        noticed_report_id="r1",
        removed_at=OLD + timedelta(days=1),
        removal_report_id="r2" if removal_reported else None,
    )
    session.add(url)
    session.add(
        n.NoticeRound(notice_id=notice.id, round=1, created_at=OLD, sent_at=OLD, report_id="r1")
    )
    session.add(
        n.NoticeDelivery(
            notice_id=notice.id,
            round=1,
            channel="smtp",
            destination="abuse@hoster-a.example",
            status="sent",
            next_attempt_at=OLD,
            created_at=OLD,
        )
    )
    session.flush()
    assert url.id is not None
    session.add(n.RecheckObservation(notice_url_id=url.id, checked_at=OLD, outcome="gone"))
    return notice.id


def counts(engine: Engine) -> dict[str, int]:
    models = {
        "sighting": Sighting,
        "sighting_attribution": SightingAttribution,
        "analysed_image": AnalysedImage,
        "analysis_failure": AnalysisFailure,
        "cycle_image": CycleImage,
        "rdap_contact": RdapContact,
        "notice": n.Notice,
        "notice_url": n.NoticeUrl,
        "notice_round": n.NoticeRound,
        "notice_delivery": n.NoticeDelivery,
        "notice_recheck": n.RecheckObservation,
    }
    with Session(engine) as session:
        return {
            name: int(session.exec(select(func.count()).select_from(model)).one())
            for name, model in models.items()
        }


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    with Session(engine) as session, session.begin():
        old_reported = add_cycle(session, OLD, reported=True, tag="old")
        add_cycle(session, OLD, reported=False, tag="pending")  # period not reported yet
        add_cycle(session, RECENT, reported=True, tag="recent")
        done = add_notice(session, state=n.CLOSED, ended=ANCIENT, removal_reported=True, tag="done")
        add_notice(session, state=n.CLOSED, ended=ANCIENT, removal_reported=False, tag="unreported")
        add_notice(session, state=n.CLOSED, ended=OLD, removal_reported=True, tag="younger")
        add_notice(session, state=n.SENT, ended=None, removal_reported=True, tag="open")
        for query, expires in (("ip:192.0.2.1", OLD), ("ip:192.0.2.2", RECENT + timedelta(days=9))):
            session.add(
                RdapContact(query=query, fetched_at=OLD, expires_at=expires, ok=True, emails="[]")
            )
    return {"sighting": old_reported["sighting"], "notice": done}


def test_dry_run_counts_and_changes_nothing(engine: Engine, world: dict[str, int]) -> None:
    before = counts(engine)
    results = run_retention(engine, SETTINGS, now=NOW, dry_run=True)
    assert {r.rule: r.count for r in results} == {
        "sightings": 1,
        "matched_images": 1,
        "unmatched_images": 1,
        "cycle_images": 3,
        "analysis_failures": 1,
        "rdap_cache": 1,
        "notices": 1,
        "held_sightings": 0,
        "candidates_decided": 0,
        "candidates_pending": 0,
    }
    assert counts(engine) == before
    assert audit.entries(engine, "retention") == []


def test_erasure_keeps_what_reports_and_notices_need(engine: Engine, world: dict[str, int]) -> None:
    before = counts(engine)
    results = run_retention(engine, SETTINGS, now=NOW, actor="ops", reason="monthly")
    after = counts(engine)
    erased = {k: before[k] - after[k] for k in before}
    assert erased == {
        "sighting": 1,  # the old, reported one; the unreported and the recent stay
        "sighting_attribution": 1,
        "analysed_image": 2,
        "analysis_failure": 1,
        "cycle_image": 3,
        "rdap_contact": 1,
        "notice": 1,  # only the closed notice whose facts were all reported
        "notice_url": 1,
        "notice_round": 1,
        "notice_delivery": 1,
        "notice_recheck": 1,
    }
    with Session(engine) as session:
        assert session.get(Sighting, world["sighting"]) is None
        assert session.get(n.Notice, world["notice"]) is None
        pending = session.exec(select(Sighting.final_url)).all()
    assert sorted(pending) == ["http://pending.test/1.png", "http://recent.test/1.png"]
    events = audit.entries(engine, "retention.erase")
    assert {e.subject: e.details["count"] for e in events} == {
        r.rule: r.count for r in results if r.count
    }
    for event in events:
        assert (event.actor, event.reason) == ("ops", "monthly")
        text = json.dumps(event.details)
        assert ".test" not in text and "192.0.2" not in text  # never the erased data
    # A second run has nothing left to do and logs nothing more.
    assert all(r.count == 0 for r in run_retention(engine, SETTINGS, now=NOW))
    assert len(audit.entries(engine, "retention.erase")) == len(events)


def test_sighting_referenced_by_a_notice_is_kept(engine: Engine, world: dict[str, int]) -> None:
    with Session(engine) as session, session.begin():
        notice_url = session.exec(select(n.NoticeUrl)).first()
        assert notice_url is not None
        notice_url.sighting_id = world["sighting"]
        session.add(notice_url)
    [result] = run_retention(engine, SETTINGS, now=NOW, only=["sightings"])
    with Session(engine) as session:
        kept = session.get(Sighting, world["sighting"]) is not None
    assert result.count == 0 and kept


def test_zero_days_keeps_forever_and_unknown_rules_are_refused(
    engine: Engine, world: dict[str, int]
) -> None:
    forever = RetentionSettings(
        sightings_days=0,
        unmatched_days=0,
        failures_days=0,
        notices_days=0,
        rdap_cache_days=0,
        candidates_days=0,
        pending_candidates_days=0,
    )
    before = counts(engine)
    results = run_retention(engine, forever, now=NOW)
    assert all(r.cutoff is None and r.count == 0 for r in results)
    assert counts(engine) == before
    with pytest.raises(ValueError, match="unknown record type"):
        run_retention(engine, SETTINGS, now=NOW, only=["everything"])
    assert set(RULES) >= {"sightings", "unmatched_images", "analysis_failures", "notices"}


async def test_scheduled_job_erases_and_reports(engine: Engine, world: dict[str, int]) -> None:
    from node.retention import scheduled_job

    lines: list[str] = []
    await scheduled_job(engine, SETTINGS, lines.append)()
    # The job runs at the real time (after NOW): at least the old reported sighting goes.
    assert lines and lines[0].startswith("retention: erased")
    assert "'sightings'" in lines[0]
    assert {e.actor for e in audit.entries(engine, "retention.erase")} == {"libra-node"}
    await scheduled_job(engine, SETTINGS, lines.append)()
    assert lines[1] == "retention: nothing to erase"
