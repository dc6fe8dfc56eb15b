"""The notice queue: sightings of finished cycles become notices; analysts approve or reject.

After a crawl cycle, its sightings that the policy selects (hash family, list category) and
that no earlier notice covers yet are grouped by hoster (country, ASN, hoster) into one notice
per hoster per run. A URL is covered while a notice names it and it was not confirmed removed
(a rejected URL stays covered: the rejection is a decision about it; a removed URL that comes
back is noticed again). Each finished cycle is processed once (NoticeCycle).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.config import NoticeSettings
from node.discovery.models import DISCARDED, HELD, HeldSighting
from node.models import RUNNING, CrawlCycle, ListEntry, Sighting
from node.notices.models import (
    APPROVED,
    PENDING_APPROVAL,
    REJECTED,
    Notice,
    NoticeCycle,
    NoticeDelivery,
    NoticeRound,
    NoticeUrl,
)

POLICY_ACTOR = "policy"


class NoticeError(Exception):
    """An operation on a notice that its state does not allow (or an unknown notice)."""


@dataclass(frozen=True)
class Created:
    notice_id: int
    hoster: str
    urls: int
    state: str


def _selected(settings: NoticeSettings, family: str, category: str | None) -> bool:
    if settings.families and family not in settings.families:
        return False
    if settings.categories:
        return category is not None and category in settings.categories
    return True


def _covered(session: Session, urls: set[str]) -> set[str]:
    if not urls:
        return set()
    rows = session.exec(
        select(NoticeUrl.url).where(
            col(NoticeUrl.url).in_(sorted(urls)), col(NoticeUrl.removed_at).is_(None)
        )
    ).all()
    return set(rows)


NOT_REPORTED = (HELD, DISCARDED)


def build_notices(
    engine: Engine, settings: NoticeSettings, now: datetime, *, actor: str = POLICY_ACTOR
) -> list[Created]:
    """Turn the sightings of every finished, unprocessed cycle into notices (one transaction)."""
    created: list[Created] = []
    with Session(engine) as session, session.begin():
        done = select(NoticeCycle.cycle_id)
        cycles = [
            int(c)
            for c in session.exec(
                select(CrawlCycle.id)
                .where(col(CrawlCycle.status) != RUNNING, col(CrawlCycle.id).not_in(done))
                .order_by(col(CrawlCycle.id))
            ).all()
            if c is not None
        ]
        if not cycles:
            return []
        # Issue 14: a sighting the flood guard holds (or an analyst discarded) is not a
        # finding to tell a hoster about; one released later is not noticed either (its
        # cycle is processed by then): the hold exists because the match was doubtful.
        held = select(HeldSighting.sighting_id).where(col(HeldSighting.state).in_(NOT_REPORTED))
        rows = session.exec(
            select(Sighting, ListEntry.category)
            .join(ListEntry, col(ListEntry.id) == col(Sighting.entry_id))
            .where(col(Sighting.cycle_id).in_(cycles), col(Sighting.id).not_in(held))
            .order_by(col(Sighting.id))
        ).all()
        candidates: dict[str, tuple[Sighting, str | None]] = {}
        for sighting, category in rows:
            url = sighting.final_url
            if url[:5].lower() == "data:" or sighting.url.startswith("data:"):
                continue  # an inline image is hosted nowhere: there is nobody to tell
            if not _selected(settings, sighting.family, category):
                continue
            candidates.setdefault(url, (sighting, category))  # first sighting of the URL
        fresh = set(candidates) - _covered(session, set(candidates))
        groups: dict[tuple[str, int, str], list[tuple[Sighting, str | None]]] = {}
        for url in sorted(fresh):
            sighting, category = candidates[url]
            groups.setdefault((sighting.country, sighting.asn, sighting.hoster), []).append(
                (sighting, category)
            )
        state = PENDING_APPROVAL if settings.require_approval else APPROVED
        for (country, asn, hoster), items in sorted(groups.items()):
            notice = Notice(country=country, asn=asn, hoster=hoster, state=state, created_at=now)
            if state == APPROVED:
                notice.decided_at, notice.decided_by = now, actor
                notice.decision_reason = "require_approval is off"
            session.add(notice)
            session.flush()
            assert notice.id is not None
            for sighting, category in items:
                session.add(
                    NoticeUrl(
                        notice_id=notice.id,
                        url=sighting.final_url,
                        server_ip=sighting.server_ip,
                        sighting_id=sighting.id,
                        entry_id=sighting.entry_id,
                        family=sighting.family,
                        category=category,
                        seen_at=sighting.seen_at,
                        last_present_at=sighting.seen_at,
                    )
                )
            audit.record(
                session,
                "notice.create",
                subject=f"notice:{notice.id}",
                actor=actor,
                reason="new sightings of a hoster",
                details={"hoster": hoster, "asn": asn, "country": country, "urls": len(items)},
            )
            if state == APPROVED:
                audit.record(
                    session,
                    "notice.approve",
                    subject=f"notice:{notice.id}",
                    actor=actor,
                    reason="require_approval is off",
                )
            created.append(Created(notice.id, hoster, len(items), state))
        for cycle_id in cycles:
            session.add(NoticeCycle(cycle_id=cycle_id, processed_at=now))
    return created


def decide(
    engine: Engine,
    notice_id: int,
    *,
    approve: bool,
    actor: str,
    reason: str,
    now: datetime,
) -> Notice:
    """Approve or reject a notice waiting for approval; audited with who and why."""
    if not approve and not reason.strip():
        raise NoticeError("a rejection needs a reason")
    with Session(engine) as session, session.begin():
        notice = session.get(Notice, notice_id)
        if notice is None:
            raise NoticeError(f"notice {notice_id} does not exist")
        if notice.state != PENDING_APPROVAL:
            raise NoticeError(f"notice {notice_id} is {notice.state}, not {PENDING_APPROVAL}")
        notice.state = APPROVED if approve else REJECTED
        notice.decided_at, notice.decided_by, notice.decision_reason = now, actor, reason
        session.add(notice)
        audit.record(
            session,
            "notice.approve" if approve else "notice.reject",
            subject=f"notice:{notice_id}",
            actor=actor,
            reason=reason,
        )
        session.flush()
        session.expunge(notice)
    return notice


def list_notices(
    engine: Engine, state: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Summaries, newest first (what `notices list` and GET /v1/notices show)."""
    with Session(engine) as session:
        counts = (
            select(NoticeUrl.notice_id, func.count().label("n"))
            .group_by(col(NoticeUrl.notice_id))
            .subquery()
        )
        removed = (
            select(NoticeUrl.notice_id, func.count().label("r"))
            .where(col(NoticeUrl.removed_at).is_not(None))
            .group_by(col(NoticeUrl.notice_id))
            .subquery()
        )
        query = (
            select(Notice, counts.c.n, removed.c.r)
            .join(counts, counts.c.notice_id == col(Notice.id))
            .join(removed, removed.c.notice_id == col(Notice.id), isouter=True)
            .order_by(col(Notice.id).desc())
            .limit(limit)
        )
        if state:
            query = query.where(col(Notice.state) == state)
        rows = session.exec(query).all()
    return [
        {
            "id": notice.id,
            "state": notice.state,
            "country": notice.country,
            "asn": notice.asn,
            "hoster": notice.hoster,
            "urls": int(n),
            "removed": int(r or 0),
            "notices_sent": notice.notices_sent,
            "created_at": notice.created_at.isoformat(),
            "last_sent_at": notice.last_sent_at.isoformat() if notice.last_sent_at else None,
            "blocked": notice.blocked,
        }
        for notice, n, r in rows
    ]


def notice_detail(engine: Engine, notice_id: int) -> dict[str, Any]:
    """A notice with its URLs, rounds and deliveries (node-local: analysts only)."""
    with Session(engine) as session:
        notice = session.get(Notice, notice_id)
        if notice is None:
            raise NoticeError(f"notice {notice_id} does not exist")
        urls = session.exec(
            select(NoticeUrl)
            .where(col(NoticeUrl.notice_id) == notice_id)
            .order_by(col(NoticeUrl.id))
        ).all()
        rounds = session.exec(
            select(NoticeRound)
            .where(col(NoticeRound.notice_id) == notice_id)
            .order_by(col(NoticeRound.round))
        ).all()
        deliveries = session.exec(
            select(NoticeDelivery)
            .where(col(NoticeDelivery.notice_id) == notice_id)
            .order_by(col(NoticeDelivery.id))
        ).all()
        return {
            "notice": notice.model_dump(mode="json"),
            "urls": [u.model_dump(mode="json") for u in urls],
            "rounds": [
                {**r.model_dump(mode="json"), "url_ids": json.loads(r.url_ids)} for r in rounds
            ],
            "deliveries": [d.model_dump(mode="json") for d in deliveries],
        }
