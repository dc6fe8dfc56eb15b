"""Notices: XARF reports, re-check classification, the queue and its policy, approvals (CLI
logic and API), statistics and the report's once-only figures. Delivery has its own file."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from datasketches import kll_floats_sketch
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.config import NoticeSettings
from node.discovery.models import HeldSighting
from node.dispatch import AnalyzeFailure
from node.matching.matcher import MatchIndex
from node.models import CrawlCycle, ListEntry, ListVersion, Sighting
from node.notices import xarf
from node.notices.api import create_app, create_token, revoke_token
from node.notices.models import (
    APPROVED,
    PENDING_APPROVAL,
    REJECTED,
    SENT,
    Notice,
    NoticeRound,
    NoticeUrl,
)
from node.notices.queue import NoticeError, build_notices, decide
from node.notices.recheck import classify
from node.notices.stats import (
    mark_reported,
    median_seconds,
    p90_seconds,
    removals_for_period,
    stats_rows,
)
from protocol.models import Period
from tests.node.conftest import hash_result, image_hashes

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PARTY = xarf.Party("Lab Police Unit", "notices@police.test", "police.test")


def _facts(**override: Any) -> xarf.UrlFacts:
    values: dict[str, Any] = {
        "url": "http://img.hoster-a.test/x/1.png",
        "server_ip": "198.51.100.7",
        "country": "DE",
        "asn": 64500,
        "hoster": "Hoster A",
        "seen_at": T0,
        "verified_at": T0,
        "classification": "A1",
        "hash_family": "sha256",
        "hash_value": None,
    }
    values.update(override)
    return xarf.UrlFacts(**values)


# --------------------------------------------------------------------------- XARF


def test_xarf_report_fields_follow_the_schema() -> None:
    report = xarf.build_report(_facts(), PARTY, notice_id=7, round_number=2)
    assert xarf.check(report) == []
    assert report["xarf_version"] == "4.0.0"
    assert uuid.UUID(report["report_id"]).version == 4
    assert (report["category"], report["type"]) == ("content", "csam")
    assert report["detection_method"] == "hash_match"
    assert report["classification"] == "A1"
    assert report["reporter"] == report["sender"] == PARTY.to_json()
    assert report["source_identifier"] == "198.51.100.7"
    assert report["domain"] == "img.hoster-a.test"
    assert (report["asn"], report["country_code"], report["hosting_provider"]) == (
        64500,
        "DE",
        "Hoster A",
    )
    assert report["timestamp"] == "2026-03-02T09:00:00Z"
    assert "hash_values" not in report and "evidence" not in report
    assert report["tags"] == ["libra:notice-7", "libra:round-2"]


def test_xarf_hash_values_only_when_given_and_unknowns_left_out() -> None:
    value = "ab" * 32
    report = xarf.build_report(
        _facts(hash_value=value, asn=0, country="ZZ", hoster="unknown", server_ip=None),
        PARTY,
        notice_id=1,
        round_number=1,
    )
    assert xarf.check(report) == []
    assert report["hash_values"] == {"sha256": value}
    assert "asn" not in report and "country_code" not in report
    assert "hosting_provider" not in report
    assert report["source_identifier"] == "img.hoster-a.test"  # no IP: the host name


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"classification": "C9"}, "classification"),
        ({"detection_method": "guess"}, "detection_method"),
        ({"type": "phishing"}, "type must be 'csam'"),
        ({"evidence": [{"content_type": "image/png", "payload": "AA=="}]}, "evidence"),
        ({"hash_values": {"sha256": "xyz"}}, "hash_values.sha256"),
        ({"reporter": {"org": "x", "contact": "x@y.test", "domain": "y.test", "a": 1}}, "unknown"),
        ({"reporter": {"org": "x", "contact": "not-mail", "domain": "y.test"}}, "e-mail"),
        ({"report_id": "123"}, "UUID"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"tags": ["Bad Tag"]}, "namespace:predicate"),
        ({"asn": 0}, "asn"),
    ],
)
def test_xarf_check_names_each_violation(change: dict[str, Any], problem: str) -> None:
    report = xarf.build_report(_facts(), PARTY, notice_id=1, round_number=1) | change
    problems = xarf.check(report)
    assert problems and any(problem in p for p in problems), problems


def test_xarf_check_requires_the_core_and_content_fields() -> None:
    report = xarf.build_report(_facts(), PARTY, notice_id=1, round_number=1)
    for key in ("url", "source_identifier", "classification", "detection_method", "sender"):
        broken = {k: v for k, v in report.items() if k != key}
        assert any(key in p for p in xarf.check(broken)), key


@settings(max_examples=60, deadline=None)
@given(
    hoster=st.text(
        st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
        min_size=1,
        max_size=200,
    ),
    asn=st.integers(0, 2**32 - 1),
    path=st.text("abcdefghijklmnopqrstuvwxyz0123456789-_/.%", max_size=80),
    category=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(xarf.CLASSIFICATIONS)),
)
def test_xarf_reports_from_any_sighting_are_valid(
    hoster: str, asn: int, path: str, category: str | None
) -> None:
    facts = _facts(
        hoster=hoster,
        asn=asn,
        url=f"http://img.example.test/{path}",
        classification=xarf.classification_of(category, "baseline"),
    )
    assert xarf.check(xarf.build_report(facts, PARTY, notice_id=3, round_number=1)) == []


def test_classification_of_maps_categories() -> None:
    assert xarf.classification_of("a1", "baseline") == "A1"
    assert xarf.classification_of(" B2 ", "baseline") == "B2"
    assert xarf.classification_of("lab-category", "B1") == "B1"
    assert xarf.classification_of(None, "baseline") == "baseline"


def test_email_has_text_and_one_json_per_url_and_webhook_signature() -> None:
    reports = [
        xarf.build_report(_facts(url=f"http://h.test/{n}.png"), PARTY, notice_id=4, round_number=1)
        for n in range(3)
    ]
    batch = xarf.Batch(4, 1, "Hoster A", 64500, "DE", PARTY, reports)
    message = xarf.email_message(batch, sender="n@police.test", recipients=["abuse@h.test"])
    parts = list(message.iter_attachments())
    assert [p.get_content_type() for p in parts] == ["application/json"] * 3
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "http://h.test/2.png" in body.get_content()
    payload = xarf.webhook_body(batch)
    signature = xarf.sign_webhook(b"k", payload, 1700000000)
    at = 1700000000.0
    assert xarf.verify_webhook(b"k", payload, "1700000000", signature, now=at)
    assert not xarf.verify_webhook(b"k", payload + b" ", "1700000000", signature, now=at)
    assert not xarf.verify_webhook(b"k", payload, "1700000001", signature, now=at)
    assert not xarf.verify_webhook(b"other", payload, "1700000000", signature, now=at)
    assert not xarf.verify_webhook(b"k", payload, "1700000000", signature, now=at + 9e9)
    assert not xarf.verify_webhook(b"k", payload, "x", signature, now=at)


def test_webhook_timestamps_outside_the_window_are_refused() -> None:
    """A captured POST replayed later (or a stamp from a badly wrong clock) is refused; within
    the window, either side of the receiver's clock, it is accepted."""
    body = b'{"notice_id": 1}'
    stamp = 1700000000
    signature = xarf.sign_webhook(b"k", body, stamp)
    window = xarf.WEBHOOK_MAX_AGE_S
    for offset, accepted in ((0, True), (window, True), (-window, True), (window + 1, False)):
        ok = xarf.verify_webhook(b"k", body, str(stamp), signature, now=stamp + offset)
        assert ok is accepted, offset
    late = stamp + window + 1
    assert xarf.verify_webhook(b"k", body, str(stamp), signature, now=late, max_age_s=None)


# --------------------------------------------------------------------------- re-check outcomes


def _index_with(entry_id: int, sha256: str) -> MatchIndex:
    return MatchIndex([(entry_id, "sha256", sha256)])


@pytest.mark.parametrize(
    ("failure", "unreachable_is_removed", "outcome"),
    [
        (AnalyzeFailure("u", "upstream_status", "upstream returned HTTP 404", 502), True, "gone"),
        (AnalyzeFailure("u", "upstream_status", "upstream returned HTTP 410", 502), True, "gone"),
        (
            AnalyzeFailure("u", "upstream_status", "upstream returned HTTP 403", 502),
            True,
            "inconclusive",
        ),
        (
            AnalyzeFailure("u", "upstream_status", "upstream returned HTTP 503", 502),
            True,
            "inconclusive",
        ),
        (AnalyzeFailure("u", "fetch_failed", "cannot connect", 502), True, "unreachable"),
        (AnalyzeFailure("u", "fetch_failed", "cannot connect", 502), False, "inconclusive"),
        (AnalyzeFailure("u", "not_an_image", "html", 415), True, "changed"),
        (AnalyzeFailure("u", "decode_failed", "truncated", 422), True, "changed"),
        (AnalyzeFailure("u", "timeout", "slow", 504), True, "inconclusive"),
        (AnalyzeFailure("u", "function_unreachable", "down", None), True, "inconclusive"),
        (AnalyzeFailure("u", "overloaded", "busy", 503), True, "inconclusive"),
        (AnalyzeFailure("u", "blocked_address", "private", 403), True, "inconclusive"),
    ],
)
def test_classify_failures(
    failure: AnalyzeFailure, unreachable_is_removed: bool, outcome: str
) -> None:
    seen = classify(failure, 1, MatchIndex(), unreachable_is_removed=unreachable_is_removed)
    assert seen.outcome == outcome
    assert seen.code == failure.code


def test_classify_hash_results() -> None:
    rng = random.Random(3)
    listed, other = image_hashes(rng), image_hashes(rng)
    index = _index_with(5, listed.sha256)
    assert classify(hash_result("u", listed), 5, index).outcome == "present"
    assert classify(hash_result("u", other), 5, index).outcome == "changed"
    # Still listed, but under another entry than the one noticed: not the noticed material.
    assert classify(hash_result("u", listed), 6, index).outcome == "changed"


# --------------------------------------------------------------------------- the queue


def _entry(session: Session, category: str | None, family: str = "sha256") -> int:
    version = session.exec(select(ListVersion)).first()
    if version is None:
        version = ListVersion(source="t", version="1", format="test")
        session.add(version)
        session.flush()
    assert version.id is not None
    entry = ListEntry(
        family=family, value=uuid.uuid4().hex * 2, list_version_id=version.id, category=category
    )
    session.add(entry)
    session.flush()
    assert entry.id is not None
    return entry.id


def add_cycle(
    engine: Engine,
    sightings: list[tuple[str, str, str | None]],  # (url, hoster, category)
    *,
    family: str = "sha256",
    status: str = "done",
) -> int:
    """A finished cycle with sightings; hosters map to AS and country by name."""
    where = {"Hoster A": ("DE", 64500), "Hoster B": ("NL", 64501), "Hoster C": ("FR", 64502)}
    with Session(engine) as session, session.begin():
        cycle = CrawlCycle(status=status, started_at=T0)
        session.add(cycle)
        session.flush()
        assert cycle.id is not None
        for url, hoster, category in sightings:
            country, asn = where[hoster]
            session.add(
                Sighting(
                    cycle_id=cycle.id,
                    url=url,
                    final_url=url,
                    server_ip="198.51.100.1",
                    country=country,
                    asn=asn,
                    hoster=hoster,
                    family=family,
                    entry_id=_entry(session, category, family),
                    distance=0,
                    seen_at=T0,
                )
            )
        return cycle.id


def _notices(engine: Engine) -> dict[str, Notice]:
    with Session(engine) as session:
        return {n.hoster: n for n in session.exec(select(Notice)).all()}


def test_one_notice_per_hoster_per_run_and_each_cycle_once(engine: Engine) -> None:
    add_cycle(
        engine,
        [
            ("http://a.test/1.png", "Hoster A", "A1"),
            ("http://a.test/2.png", "Hoster A", "A1"),
            ("http://b.test/1.png", "Hoster B", None),
            ("data:sha256," + "0" * 64, "Hoster B", None),  # inline image: nobody to tell
        ],
    )
    add_cycle(engine, [("http://c.test/1.png", "Hoster C", None)], status="running")
    created = build_notices(engine, NoticeSettings(), T0)
    assert sorted((c.hoster, c.urls, c.state) for c in created) == [
        ("Hoster A", 2, PENDING_APPROVAL),
        ("Hoster B", 1, PENDING_APPROVAL),
    ]
    assert build_notices(engine, NoticeSettings(), T0) == []  # the cycle was processed
    creations = audit.entries(engine, "notice.create")
    assert len(creations) == 2 and {e.actor for e in creations} == {"policy"}


def test_held_and_discarded_sightings_are_not_noticed(engine: Engine) -> None:
    """Issue 14: the flood guard's held sightings (and those an analyst discarded) are doubtful
    matches, never told to a hoster; a released one of the same cycle is."""
    cycle = add_cycle(
        engine,
        [
            ("http://a.test/held.png", "Hoster A", None),
            ("http://b.test/discarded.png", "Hoster B", None),
            ("http://c.test/released.png", "Hoster C", None),
        ],
    )
    with Session(engine) as session, session.begin():
        for sighting in session.exec(select(Sighting).where(Sighting.cycle_id == cycle)).all():
            assert sighting.id is not None
            state = sighting.url.rsplit("/", 1)[-1].removesuffix(".png")
            session.add(
                HeldSighting(sighting_id=sighting.id, entry_id=sighting.entry_id, state=state)
            )
    created = build_notices(engine, NoticeSettings(), T0)
    assert [(c.hoster, c.urls) for c in created] == [("Hoster C", 1)]


def test_urls_under_an_open_notice_are_not_noticed_again(engine: Engine) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    build_notices(engine, NoticeSettings(), T0)
    add_cycle(
        engine,
        [("http://a.test/1.png", "Hoster A", None), ("http://a.test/9.png", "Hoster A", None)],
    )
    created = build_notices(engine, NoticeSettings(), T0 + timedelta(hours=6))
    assert [(c.hoster, c.urls) for c in created] == [("Hoster A", 1)]
    with Session(engine) as session:
        urls = sorted(u.url for u in session.exec(select(NoticeUrl)).all())
    assert urls == ["http://a.test/1.png", "http://a.test/9.png"]


def test_a_removed_url_that_comes_back_is_noticed_again(engine: Engine) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    build_notices(engine, NoticeSettings(), T0)
    with Session(engine) as session, session.begin():
        row = session.exec(select(NoticeUrl)).one()
        row.removed_at, row.removal_reason = T0 + timedelta(days=1), "gone"
        session.add(row)
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    assert len(build_notices(engine, NoticeSettings(), T0 + timedelta(days=2))) == 1


def test_policy_selects_families_and_categories(engine: Engine) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", "A1")], family="pdq")
    add_cycle(engine, [("http://b.test/1.png", "Hoster B", "A1")], family="sha256")
    add_cycle(engine, [("http://c.test/1.png", "Hoster C", "other")], family="sha256")
    policy = NoticeSettings(families=["sha256", "md5"], categories=["A1", "A2"])
    created = build_notices(engine, policy, T0)
    assert [c.hoster for c in created] == ["Hoster B"]


def test_without_approval_policy_approves(engine: Engine) -> None:
    add_cycle(engine, [("http://a.test/1.png", "Hoster A", None)])
    created = build_notices(engine, NoticeSettings(require_approval=False), T0)
    assert [c.state for c in created] == [APPROVED]
    approvals = audit.entries(engine, "notice.approve")
    assert [(e.actor, e.subject) for e in approvals] == [
        ("policy", f"notice:{created[0].notice_id}")
    ]


def test_decide_rules_and_audit(engine: Engine) -> None:
    add_cycle(
        engine,
        [("http://a.test/1.png", "Hoster A", None), ("http://b.test/1.png", "Hoster B", None)],
    )
    build_notices(engine, NoticeSettings(), T0)
    ids = {h: n.id for h, n in _notices(engine).items()}
    with pytest.raises(NoticeError, match="needs a reason"):
        decide(engine, ids["Hoster B"], approve=False, actor="ana", reason=" ", now=T0)
    decide(engine, ids["Hoster B"], approve=False, actor="ana", reason="wrong hoster", now=T0)
    decide(engine, ids["Hoster A"], approve=True, actor="ana", reason="", now=T0)
    with pytest.raises(NoticeError, match="is approved"):
        decide(engine, ids["Hoster A"], approve=True, actor="ana", reason="", now=T0)
    with pytest.raises(NoticeError, match="does not exist"):
        decide(engine, 999, approve=True, actor="ana", reason="", now=T0)
    states = {h: n.state for h, n in _notices(engine).items()}
    assert states == {"Hoster A": APPROVED, "Hoster B": REJECTED}
    rejections = audit.entries(engine, "notice.reject")
    assert [(e.actor, e.reason) for e in rejections] == [("ana", "wrong hoster")]
    # A rejected URL stays covered: the next cycle does not propose it again.
    add_cycle(engine, [("http://b.test/1.png", "Hoster B", None)])
    assert build_notices(engine, NoticeSettings(), T0 + timedelta(days=1)) == []


# --------------------------------------------------------------------------- API


def test_api_auth_decisions_and_audit(engine: Engine) -> None:
    add_cycle(
        engine,
        [("http://a.test/1.png", "Hoster A", None), ("http://b.test/1.png", "Hoster B", None)],
    )
    build_notices(engine, NoticeSettings(), T0)
    ids = {h: n.id for h, n in _notices(engine).items()}
    token = create_token(engine, "ana")
    other = create_token(engine, "bob")
    client = TestClient(create_app(engine, clock=lambda: T0))
    auth = {"Authorization": f"Bearer {token}"}

    assert client.get("/v1/notices").status_code == 401
    assert client.get("/v1/notices", headers={"Authorization": "Basic x"}).status_code == 401
    assert client.get("/v1/notices", headers={"Authorization": "Bearer x"}).status_code == 401
    listed = client.get("/v1/notices", params={"state": "pending_approval"}, headers=auth)
    assert listed.status_code == 200 and len(listed.json()["notices"]) == 2
    bad_state = client.get("/v1/notices", params={"state": "nope"}, headers=auth)
    assert bad_state.status_code == 422
    detail = client.get(f"/v1/notices/{ids['Hoster A']}", headers=auth)
    assert detail.status_code == 200
    assert detail.json()["urls"][0]["url"] == "http://a.test/1.png"
    assert client.get("/v1/notices/999", headers=auth).status_code == 404

    no_reason = client.post(f"/v1/notices/{ids['Hoster B']}/reject", json={}, headers=auth)
    assert no_reason.status_code == 422 and no_reason.json()["error"]["code"] == "reason_required"
    extra = client.post(
        f"/v1/notices/{ids['Hoster B']}/reject", json={"reason": "x", "more": 1}, headers=auth
    )
    assert extra.status_code == 422
    ok = client.post(
        f"/v1/notices/{ids['Hoster B']}/reject", json={"reason": "not ours"}, headers=auth
    )
    assert ok.json() == {"id": ids["Hoster B"], "state": REJECTED}
    approved = client.post(
        f"/v1/notices/{ids['Hoster A']}/approve",
        json={"reason": "ok"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert approved.status_code == 200
    again = client.post(f"/v1/notices/{ids['Hoster A']}/approve", json={}, headers=auth)
    assert again.status_code == 409
    assert client.get("/v1/notices/stats", headers=auth).json() == {"hosters": []}

    assert revoke_token(engine, "bob") == 1
    assert (
        client.get("/v1/notices", headers={"Authorization": f"Bearer {other}"}).status_code == 401
    )

    assert [e.actor for e in audit.entries(engine, "notice.approve")] == ["api:bob"]
    assert [e.actor for e in audit.entries(engine, "notice.reject")] == ["api:ana"]
    consults = audit.entries(engine, "notice.consult")
    assert {e.subject for e in consults} >= {"notices", f"notice:{ids['Hoster A']}", "stats"}
    # Tokens are stored hashed only.
    from node.notices.models import NoticeApiToken

    with Session(engine) as session:
        stored = [t.token_sha256 for t in session.exec(select(NoticeApiToken)).all()]
    assert token not in stored and len(stored) == 2


# --------------------------------------------------------------------------- statistics


def test_median_and_p90() -> None:
    assert median_seconds([10.0]) == p90_seconds([10.0]) == 10
    assert median_seconds([10.0, 20.0]) == 15
    assert p90_seconds([float(n) for n in range(1, 11)]) == 9
    assert p90_seconds([float(n) for n in range(1, 12)]) == 10
    assert median_seconds([3.0, 1.0, 2.0]) == 2


def _sent_notice(engine: Engine, removals: list[float | None], sent_at: datetime) -> None:
    """A notice to Hoster A, sent once at ``sent_at``, whose URLs went after those seconds."""
    add_cycle(engine, [(f"http://a.test/{uuid.uuid4().hex}", "Hoster A", None) for _ in removals])
    build_notices(engine, NoticeSettings(require_approval=False), sent_at)
    with Session(engine) as session, session.begin():
        notice = session.exec(
            select(Notice).where(col(Notice.state) == APPROVED).order_by(col(Notice.id).desc())
        ).first()
        assert notice is not None and notice.id is not None
        notice.state, notice.notices_sent = SENT, 1
        notice.first_sent_at = notice.last_sent_at = sent_at
        session.add(notice)
        rows = session.exec(select(NoticeUrl).where(col(NoticeUrl.notice_id) == notice.id)).all()
        session.add(NoticeRound(notice_id=notice.id, round=1, created_at=sent_at, sent_at=sent_at))
        for row, seconds in zip(rows, removals, strict=True):
            row.first_notice_at = sent_at
            if seconds is not None:
                row.removed_at, row.removal_reason = sent_at + timedelta(seconds=seconds), "gone"
            session.add(row)


def test_removals_for_period_counts_each_fact_once(engine: Engine) -> None:
    day = Period(start=T0.replace(hour=0), end=T0.replace(hour=0) + timedelta(days=1))
    next_day = Period(start=day.end, end=day.end + timedelta(days=1))
    # Sent at 09:00; removals after 1 h, 10 h and 30 h; one never.
    _sent_notice(engine, [3600.0, 36000.0, 108000.0, None], T0)
    with Session(engine) as session, session.begin():
        first = removals_for_period(session, day)
        mark_reported(session, day, "r1")
    assert len(first) == 1
    row = first[0]
    assert (row.hoster, row.notices_sent, row.urls_noticed) == ("Hoster A", 1, 4)
    assert (row.removed, row.removed_within_24h, row.removed_within_72h) == (2, 2, 2)
    assert (row.median_seconds, row.p90_seconds) == (19800, 36000)
    assert row.removal_sketch is not None
    with Session(engine) as session, session.begin():
        assert removals_for_period(session, day) == []  # carried already
        second = removals_for_period(session, next_day)
        mark_reported(session, next_day, "r2")
    assert [(r.notices_sent, r.urls_noticed, r.removed, r.removed_within_24h) for r in second] == [
        (0, 0, 1, 0)
    ]
    assert second[0].median_seconds == 108000
    # All-time statistics ignore the report marks.
    with Session(engine) as session:
        rows = stats_rows(session)
    assert rows[0]["removed"] == 3 and rows[0]["still_online"] == 1
    assert rows[0]["share_within_24h"] == 0.5 and rows[0]["share_within_72h"] == 0.75
    sketch = kll_floats_sketch.deserialize(__import__("base64").b64decode(row.removal_sketch))
    assert sketch.n == 2
