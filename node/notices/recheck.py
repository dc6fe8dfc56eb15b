"""Re-check noticed URLs through the function; record removals; re-notice; escalate.

Each URL of a sent (or escalated) notice that is not yet confirmed removed is analysed again
through the remote-hash function (node.dispatch.FunctionClient, signed requests). Outcomes:

- ``present``: the function hashed it and it still matches the list entry it matched;
- ``changed``: it hashed to something that no longer matches that entry, or the URL no longer
  serves an image or video at all (not_an_image, unsupported_format, decode_failed): removed;
- ``gone``: the hoster answered 404 or 410 (the function's ``upstream_status``): removed;
- ``unreachable``: nothing answers any more (``fetch_failed``): removed when
  ``unreachable_is_removed`` (default), else inconclusive;
- ``inconclusive``: anything else (function down or overloaded, timeouts, other statuses):
  nothing is decided, the URL is checked again next time.

"Still matches" follows the crawl's routes (node.matching.media_match, issue 13): an image
through the image index, or as a frame of a listed video (``vpdq-frame``); a video through its
bytes' exact digests, or vPDQ against the listed videos. The VideoIndex is built at most once
per run, and only when a noticed URL's entry is a listed video's vPDQ.

Time to removal = the time the removal was observed - the time the URL was first noticed
(both recorded; ``now`` comes from the caller's clock, so tests control time).

A notice still there ``renotice_hours`` after its last round gets a new round naming the URLs
confirmed present since; after ``escalate_after`` rounds it is escalated instead (flag, audit,
a message to ``escalation_email`` if set) and gets no more automatic notices, but its URLs are
still re-checked so a late removal is still measured.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.config import NoticeSettings
from node.dispatch import AnalyzeFailure
from node.matching.matcher import MatchIndex
from node.matching.media_match import VPDQ_FAMILIES, matched_entries
from node.matching.video_index import VideoIndex
from node.matching.video_lists import video_index_from_db
from node.matching.vpdq import VpdqSettings
from node.notices.delivery import PlanTarget, target_for
from node.notices.models import (
    CLOSED,
    ESCALATED,
    SENT,
    Notice,
    NoticeRound,
    NoticeUrl,
    RecheckObservation,
)
from protocol.models import HashResult

PRESENT = "present"
GONE = "gone"
CHANGED = "changed"
UNREACHABLE = "unreachable"
INCONCLUSIVE = "inconclusive"
REMOVED_OUTCOMES = frozenset({GONE, CHANGED, UNREACHABLE})
_NOT_AN_IMAGE = frozenset({"not_an_image", "unsupported_format", "decode_failed"})
RECHECK_BATCH = 256  # URLs in flight per gather (the function client bounds concurrency)
_UPSTREAM = re.compile(r"\bHTTP (\d{3})\b")


class FunctionLike(Protocol):
    async def analyze(self, url: str, *, dihedral: bool = False) -> HashResult | AnalyzeFailure: ...


@dataclass(frozen=True)
class Observation:
    outcome: str
    code: str | None = None
    http_status: int | None = None  # the hoster's status for upstream_status answers


def classify(
    result: HashResult | AnalyzeFailure,
    entry_id: int,
    index: MatchIndex,
    *,
    unreachable_is_removed: bool = True,
    videos: VideoIndex | None = None,
    video_entry: bool = False,
) -> Observation:
    """What one re-check of a URL that matched list entry ``entry_id`` says.

    ``video_entry``: the entry is a listed video's vPDQ (the URL was noticed as ``vpdq`` or
    ``vpdq-frame``), so it is looked for in ``videos`` too."""
    still = False
    if isinstance(result, HashResult):
        listed = {entry_id} if video_entry else set()
        [still] = matched_entries(index, videos, [result], [entry_id], listed)
    return observe(result, still, unreachable_is_removed=unreachable_is_removed)


def observe(
    result: HashResult | AnalyzeFailure, still_matches: bool, *, unreachable_is_removed: bool
) -> Observation:
    """The outcome of one re-check, given whether a hashed result still matches its entry."""
    if isinstance(result, HashResult):
        return Observation(PRESENT if still_matches else CHANGED)
    code = result.code
    if code == "upstream_status":
        found = _UPSTREAM.search(result.message)
        status = int(found.group(1)) if found else None
        return Observation(GONE if status in (404, 410) else INCONCLUSIVE, code, status)
    if code in _NOT_AN_IMAGE:
        return Observation(CHANGED, code)
    if code == "fetch_failed":
        return Observation(UNREACHABLE if unreachable_is_removed else INCONCLUSIVE, code)
    return Observation(INCONCLUSIVE, code)


def still_matching(
    engine: Engine,
    index: MatchIndex,
    targets: list[tuple[int, str, int, str]],
    results: list[HashResult | AnalyzeFailure],
    vpdq: VpdqSettings | None,
) -> list[bool]:
    """Whether each hashed result still matches its target's entry (False for failures).

    One batched image-index search for all; the VideoIndex is built (once) only when a hashed
    result's URL was noticed under a video family."""
    hashed = [n for n, r in enumerate(results) if isinstance(r, HashResult)]
    listed = {targets[n][2] for n in hashed if targets[n][3] in VPDQ_FAMILIES}
    videos = video_index_from_db(engine, vpdq) if listed else None
    found = matched_entries(
        index,
        videos,
        [r for r in results if isinstance(r, HashResult)],
        [targets[n][2] for n in hashed],
        listed,
    )
    out = [False] * len(results)
    for n, still in zip(hashed, found, strict=True):
        out[n] = still
    return out


@dataclass
class RecheckSummary:
    checked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    removed: int = 0
    closed: list[int] = field(default_factory=list)


async def recheck(
    engine: Engine,
    settings: NoticeSettings,
    function: FunctionLike,
    index: MatchIndex,
    now: datetime,
    *,
    dihedral: bool = False,
    vpdq: VpdqSettings | None = None,
) -> RecheckSummary:
    """Re-check every noticed, not yet removed URL of sent or escalated notices.

    ``vpdq``: the node's vPDQ parameters (node.matching.video_lists.vpdq_settings of its
    ``[match]`` section; None: the defaults, which are also the settings' defaults)."""
    with Session(engine) as session:
        rows = session.exec(
            select(NoticeUrl.id, NoticeUrl.url, NoticeUrl.entry_id, NoticeUrl.family)
            .join(Notice, col(Notice.id) == col(NoticeUrl.notice_id))
            .where(
                col(Notice.state).in_((SENT, ESCALATED)),
                col(NoticeUrl.removed_at).is_(None),
                col(NoticeUrl.first_notice_at).is_not(None),
            )
            .order_by(col(NoticeUrl.id))
        ).all()
    targets = [(int(i), url, int(e), family) for i, url, e, family in rows if i is not None]
    results: list[HashResult | AnalyzeFailure] = []
    for start in range(0, len(targets), RECHECK_BATCH):  # bounded number of pending tasks
        batch = targets[start : start + RECHECK_BATCH]
        results += await asyncio.gather(
            *(function.analyze(url, dihedral=dihedral) for _, url, _, _ in batch)
        )
    still = still_matching(engine, index, targets, results, vpdq)
    summary = RecheckSummary()
    touched: set[int] = set()
    with Session(engine) as session, session.begin():
        for (url_id, *_), result, matches in zip(targets, results, still, strict=True):
            seen = observe(result, matches, unreachable_is_removed=settings.unreachable_is_removed)
            summary.checked += 1
            summary.outcomes[seen.outcome] = summary.outcomes.get(seen.outcome, 0) + 1
            session.add(
                RecheckObservation(
                    notice_url_id=url_id,
                    checked_at=now,
                    outcome=seen.outcome,
                    code=seen.code,
                    http_status=seen.http_status,
                )
            )
            row = session.get(NoticeUrl, url_id)
            assert row is not None
            row.last_checked_at, row.last_outcome = now, seen.outcome
            if seen.outcome == PRESENT:
                row.last_present_at = now
            elif seen.outcome in REMOVED_OUTCOMES:
                row.removed_at, row.removal_reason = now, seen.outcome
                summary.removed += 1
                touched.add(row.notice_id)
            session.add(row)
        session.flush()
        for notice_id in sorted(touched):
            summary.closed.extend(_close_if_done(session, notice_id, now))
        if summary.checked:
            audit.record(
                session,
                "notice.recheck",
                actor="notices",
                reason="scheduled re-check of noticed URLs",
                details={"checked": summary.checked, **summary.outcomes},
            )
    return summary


def _close_if_done(session: Session, notice_id: int, now: datetime) -> list[int]:
    left = session.exec(
        select(NoticeUrl.id).where(
            col(NoticeUrl.notice_id) == notice_id, col(NoticeUrl.removed_at).is_(None)
        )
    ).first()
    removed = session.exec(
        select(NoticeUrl).where(
            col(NoticeUrl.notice_id) == notice_id, col(NoticeUrl.removed_at) == now
        )
    ).all()
    audit.record(
        session,
        "notice.removed",
        subject=f"notice:{notice_id}",
        actor="notices",
        reason="re-check found the material removed",
        details={
            "urls": [u.id for u in removed],
            "why": sorted({u.removal_reason for u in removed if u.removal_reason}),
        },
    )
    if left is not None:
        return []
    notice = session.get(Notice, notice_id)
    assert notice is not None
    notice.state, notice.closed_at = CLOSED, now
    session.add(notice)
    audit.record(
        session,
        "notice.close",
        subject=f"notice:{notice_id}",
        actor="notices",
        reason="every URL of the notice was confirmed removed",
    )
    return [notice_id]


def due_rounds(engine: Engine, settings: NoticeSettings, now: datetime) -> list[PlanTarget]:
    """Sent notices whose material is still there ``renotice_hours`` after the last round:
    the next round, or, after ``escalate_after`` rounds, an escalation (state changed here)."""
    interval = timedelta(hours=settings.renotice_hours)
    targets: list[PlanTarget] = []
    with Session(engine) as session, session.begin():
        notices = session.exec(
            select(Notice).where(col(Notice.state) == SENT).order_by(col(Notice.id))
        ).all()
        for notice in notices:
            assert notice.id is not None
            if notice.last_sent_at is None or notice.last_sent_at + interval > now:
                continue
            unsent = session.exec(
                select(NoticeRound.id).where(
                    col(NoticeRound.notice_id) == notice.id, col(NoticeRound.sent_at).is_(None)
                )
            ).first()
            if unsent is not None:
                continue  # the previous round is still being delivered
            present = session.exec(
                select(NoticeUrl)
                .where(
                    col(NoticeUrl.notice_id) == notice.id,
                    col(NoticeUrl.removed_at).is_(None),
                    col(NoticeUrl.last_outcome) == PRESENT,
                    col(NoticeUrl.last_checked_at) >= notice.last_sent_at,
                )
                .order_by(col(NoticeUrl.id))
            ).all()
            if not present:
                continue  # not confirmed still there since the last round: wait
            if notice.notices_sent >= settings.escalate_after:
                notice.state, notice.escalated_at = ESCALATED, now
                session.add(notice)
                audit.record(
                    session,
                    "notice.escalate",
                    subject=f"notice:{notice.id}",
                    actor="notices",
                    reason=f"still online after {notice.notices_sent} notices",
                    details={"urls": len(present), "escalation_email": settings.escalation_email},
                )
                targets.append(
                    target_for(notice, list(present), notice.notices_sent, escalation=True)
                )
            else:
                targets.append(target_for(notice, list(present), notice.notices_sent + 1))
    return targets
