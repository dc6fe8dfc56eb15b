"""Per-hoster notice statistics: for the operator (`notices stats`, the API) and the report.

Time to removal of a URL = removed_at - first_notice_at, in seconds. Median: the usual median
(mean of the two middle values for an even count), rounded to whole seconds; p90: nearest rank
(the smallest value with at least 90 % of the values at or below it). "Within 24 h / 72 h"
counts removals with a time to removal <= 86 400 / 259 200 s.

The report carries each fact once, because the coordinator adds up every report it receives:
``removals_for_period`` takes the facts dated before the period's end that no report carried
yet (a round delivered, a URL first noticed, a removal confirmed) and ``mark_reported`` stamps
them with the report id in the reporter's transaction. A fact that missed its own period's
reports (the node was down at the period's end) goes into the next report.
"""

from __future__ import annotations

import base64
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from datasketches import kll_floats_sketch
from sqlalchemy import update
from sqlmodel import Session, col, select

from node.notices.models import Notice, NoticeRound, NoticeUrl
from protocol.models import HosterRemovals, Period

KLL_K = 200
DAY = 86_400
THREE_DAYS = 3 * DAY

HosterKey = tuple[str, int, str]  # (country, asn, hoster), as in the report cells


def median_seconds(values: list[float]) -> int:
    return round(statistics.median(values))


def p90_seconds(values: list[float]) -> int:
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)])


def removal_sketch(values: Iterable[float]) -> str:
    sketch = kll_floats_sketch(KLL_K)
    for value in values:
        sketch.update(float(value))
    return base64.b64encode(sketch.serialize()).decode("ascii")


@dataclass
class HosterFigures:
    notices_sent: int = 0
    urls_noticed: int = 0
    seconds: list[float] = field(default_factory=list)
    escalated: int = 0
    open_urls: int = 0

    @property
    def removed(self) -> int:
        return len(self.seconds)

    def within(self, limit: int) -> int:
        return sum(1 for s in self.seconds if s <= limit)

    def as_removals(self, key: HosterKey, *, sketch: bool = True) -> HosterRemovals:
        country, asn, hoster = key
        return HosterRemovals(
            country=country,
            asn=asn,
            hoster=hoster,
            notices_sent=self.notices_sent,
            urls_noticed=self.urls_noticed,
            removed=self.removed,
            removed_within_24h=self.within(DAY),
            removed_within_72h=self.within(THREE_DAYS),
            median_seconds=median_seconds(self.seconds) if self.seconds else None,
            p90_seconds=p90_seconds(self.seconds) if self.seconds else None,
            removal_sketch=removal_sketch(self.seconds) if sketch and self.seconds else None,
        )


def _seconds(url: NoticeUrl) -> float:
    assert url.removed_at is not None and url.first_notice_at is not None
    return max(0.0, (url.removed_at - url.first_notice_at).total_seconds())


def _key(notice: Notice) -> HosterKey:
    return (notice.country, notice.asn, notice.hoster)


def hoster_stats(session: Session, since: datetime | None = None) -> dict[HosterKey, HosterFigures]:
    """All-time (or since ``since``) figures per hoster, whether reported or not."""
    figures: dict[HosterKey, HosterFigures] = {}
    rounds = select(Notice, NoticeRound).join(
        NoticeRound, col(NoticeRound.notice_id) == col(Notice.id)
    )
    rounds = rounds.where(col(NoticeRound.sent_at).is_not(None))
    if since is not None:
        rounds = rounds.where(col(NoticeRound.sent_at) >= since)
    for notice, _round in session.exec(rounds).all():
        figures.setdefault(_key(notice), HosterFigures()).notices_sent += 1
    urls = select(Notice, NoticeUrl).join(NoticeUrl, col(NoticeUrl.notice_id) == col(Notice.id))
    urls = urls.where(col(NoticeUrl.first_notice_at).is_not(None))
    if since is not None:
        urls = urls.where(col(NoticeUrl.first_notice_at) >= since)
    for notice, url in session.exec(urls).all():
        acc = figures.setdefault(_key(notice), HosterFigures())
        acc.urls_noticed += 1
        if url.removed_at is not None:
            acc.seconds.append(_seconds(url))
        else:
            acc.open_urls += 1
    escalated = select(Notice).where(col(Notice.escalated_at).is_not(None))
    if since is not None:
        escalated = escalated.where(col(Notice.escalated_at) >= since)
    for notice in session.exec(escalated).all():
        figures.setdefault(_key(notice), HosterFigures()).escalated += 1
    return figures


def removals_for_period(session: Session, period: Period) -> list[HosterRemovals]:
    """The per-hoster figures a report for ``period`` carries: facts dated before its end
    that no report carried yet (see the module doc)."""
    end = period.end
    figures: dict[HosterKey, HosterFigures] = {}
    for notice, _round in session.exec(
        select(Notice, NoticeRound)
        .join(NoticeRound, col(NoticeRound.notice_id) == col(Notice.id))
        .where(
            col(NoticeRound.sent_at).is_not(None),
            col(NoticeRound.sent_at) < end,
            col(NoticeRound.report_id).is_(None),
        )
    ).all():
        figures.setdefault(_key(notice), HosterFigures()).notices_sent += 1
    for notice, _url in session.exec(
        select(Notice, NoticeUrl)
        .join(NoticeUrl, col(NoticeUrl.notice_id) == col(Notice.id))
        .where(
            col(NoticeUrl.first_notice_at).is_not(None),
            col(NoticeUrl.first_notice_at) < end,
            col(NoticeUrl.noticed_report_id).is_(None),
        )
    ).all():
        figures.setdefault(_key(notice), HosterFigures()).urls_noticed += 1
    for notice, url in session.exec(
        select(Notice, NoticeUrl)
        .join(NoticeUrl, col(NoticeUrl.notice_id) == col(Notice.id))
        .where(
            col(NoticeUrl.removed_at).is_not(None),
            col(NoticeUrl.removed_at) < end,
            col(NoticeUrl.first_notice_at).is_not(None),
            col(NoticeUrl.removal_report_id).is_(None),
        )
    ).all():
        figures.setdefault(_key(notice), HosterFigures()).seconds.append(_seconds(url))
    return [figures[key].as_removals(key) for key in sorted(figures)]


def mark_reported(session: Session, period: Period, report_id: str) -> None:
    """Stamp the facts ``removals_for_period`` took with the report that carries them (call in
    the same transaction, right after it)."""
    end = period.end
    session.execute(
        update(NoticeRound)
        .where(
            col(NoticeRound.sent_at).is_not(None),
            col(NoticeRound.sent_at) < end,
            col(NoticeRound.report_id).is_(None),
        )
        .values(report_id=report_id)
    )
    session.execute(
        update(NoticeUrl)
        .where(
            col(NoticeUrl.first_notice_at).is_not(None),
            col(NoticeUrl.first_notice_at) < end,
            col(NoticeUrl.noticed_report_id).is_(None),
        )
        .values(noticed_report_id=report_id)
    )
    session.execute(
        update(NoticeUrl)
        .where(
            col(NoticeUrl.removed_at).is_not(None),
            col(NoticeUrl.removed_at) < end,
            col(NoticeUrl.first_notice_at).is_not(None),
            col(NoticeUrl.removal_report_id).is_(None),
        )
        .values(removal_report_id=report_id)
    )


def stats_rows(session: Session, since: datetime | None = None) -> list[dict[str, object]]:
    """hoster_stats as plain rows (CLI table, API JSON)."""
    rows: list[dict[str, object]] = []
    for key, acc in sorted(hoster_stats(session, since).items()):
        country, asn, hoster = key
        removed = acc.removed
        rows.append(
            {
                "country": country,
                "asn": asn,
                "hoster": hoster,
                "notices_sent": acc.notices_sent,
                "urls_noticed": acc.urls_noticed,
                "removed": removed,
                "still_online": acc.open_urls,
                "median_seconds": median_seconds(acc.seconds) if removed else None,
                "p90_seconds": p90_seconds(acc.seconds) if removed else None,
                # shares of the noticed URLs (a hoster that removes nothing scores 0, not n/a)
                "share_within_24h": acc.within(DAY) / acc.urls_noticed
                if acc.urls_noticed
                else None,
                "share_within_72h": (
                    acc.within(THREE_DAYS) / acc.urls_noticed if acc.urls_noticed else None
                ),
                "escalated": acc.escalated,
            }
        )
    return rows
