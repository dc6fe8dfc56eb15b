"""Retention: each kind of record the node keeps is erased after its configured time.

Record types are rules in a small registry (``register``): sightings, matched and unmatched
analysed image URLs, the per-cycle URL log, analysis failures, notices (node/notices),
expired RDAP cache rows, and of discovery (issue 14, node/discovery) decided flood-guard holds,
decided candidates (after their verdict) and pending candidates (after they were last seen).
The audit log is never erased (append-only by design).

What is never erased, whatever its age:
- anything of a crawl cycle that no report has carried yet (``crawl_cycle.report_id`` unset:
  the period is not reported, or the cycle is still running). A report is built from the rows
  of its cycles and signed into the outbox in one transaction, so once a cycle has a report id
  its rows are no longer needed for reporting; ``CYCLE_HOLDS`` lets another module keep a
  cycle's rows longer (e.g. until its sightings became notices);
- a sighting that another table still references (found from the schema's foreign keys, e.g.
  a notice URL): it goes when that reference does;
- a notice whose facts (noticed, removed, each round sent) have not all been carried by a
  report, or that is still open;
- a candidate whose first cycle no report has carried yet (reports count new candidates),
  and a sighting the flood guard still holds. A candidate cluster is erased as one (its
  representative and near-duplicates). A rejected candidate's hashes stay on the negative
  list: its NegativeEntry rows lose their link to the candidate, not their values.

Each rule's erasure and its audit event (rule, cut-off, count: never the erased data) are one
transaction: the log cannot claim an erasure that did not happen, or miss one that did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, col

from node import audit
from node.config import RetentionSettings
from node.models import (
    RUNNING,
    AnalysedImage,
    AnalysisFailure,
    CrawlCycle,
    CycleImage,
    RdapContact,
    Sighting,
    SightingAttribution,
)
from protocol.models import utcnow

CHUNK = 500


@dataclass(frozen=True)
class Rule:
    name: str  # record type, as shown and audited
    description: str
    days: Callable[[RetentionSettings], float]  # 0 = kept forever
    # ids of the rows older than the cut-off that may be erased
    candidates: Callable[[datetime], Select[Any]]
    erase: Callable[[Session, list[int]], None]  # deletes those rows (and their dependents)


@dataclass(frozen=True)
class RuleResult:
    rule: str
    days: float
    cutoff: datetime | None  # None: kept forever (days = 0)
    count: int  # erased (or, in a dry run, that would be)


RULES: dict[str, Rule] = {}
# Conditions on CrawlCycle.id that must hold before a cycle's rows may be erased (besides
# "reported"); a module that still needs a reported cycle's rows adds one.
CYCLE_HOLDS: list[Callable[[], ColumnElement[bool]]] = []


def register(rule: Rule) -> None:
    """Add (or replace, by name) a record type."""
    RULES[rule.name] = rule


def _reported_cycle(cycle_id: Any) -> ColumnElement[bool]:
    reported = sa_select(col(CrawlCycle.id)).where(
        col(CrawlCycle.report_id).is_not(None), col(CrawlCycle.status) != RUNNING
    )
    for hold in CYCLE_HOLDS:
        reported = reported.where(hold())
    return col(cycle_id).in_(reported)


def _delete_ids(session: Session, model: Any, ids: list[int], column: Any = None) -> None:
    target = column if column is not None else model.id
    for start in range(0, len(ids), CHUNK):
        session.execute(delete(model).where(col(target).in_(ids[start : start + CHUNK])))


def _unreferenced_sighting() -> list[ColumnElement[bool]]:
    """Sightings referenced from another table (other than their attribution link) stay."""
    conditions: list[ColumnElement[bool]] = []
    sighting_table = Sighting.__table__  # type: ignore[attr-defined]
    for table in SQLModel.metadata.sorted_tables:
        if table.name in ("sighting", "sighting_attribution"):
            continue
        for fk in table.foreign_keys:
            if fk.column.table is sighting_table:
                refs = sa_select(fk.parent).where(fk.parent.is_not(None))
                conditions.append(col(Sighting.id).not_in(refs))
    return conditions


# ---- built-in rules


def _sightings(cutoff: datetime) -> Select[Any]:
    return sa_select(col(Sighting.id)).where(
        col(Sighting.seen_at) < cutoff,
        _reported_cycle(Sighting.cycle_id),
        *_unreferenced_sighting(),
    )


def _erase_sightings(session: Session, ids: list[int]) -> None:
    _delete_ids(session, SightingAttribution, ids, SightingAttribution.sighting_id)
    _delete_ids(session, Sighting, ids)


def _analysed(matched: bool) -> Callable[[datetime], Select[Any]]:
    def candidates(cutoff: datetime) -> Select[Any]:
        entry = col(AnalysedImage.entry_id)
        return sa_select(col(AnalysedImage.id)).where(
            col(AnalysedImage.analysed_at) < cutoff,
            entry.is_not(None) if matched else entry.is_(None),
            _reported_cycle(AnalysedImage.cycle_id),
        )

    return candidates


def _cycle_images(cutoff: datetime) -> Select[Any]:
    finished_before = sa_select(col(CrawlCycle.id)).where(col(CrawlCycle.finished_at) < cutoff)
    return sa_select(col(CycleImage.id)).where(
        col(CycleImage.cycle_id).in_(finished_before), _reported_cycle(CycleImage.cycle_id)
    )


def _failures(cutoff: datetime) -> Select[Any]:
    return sa_select(col(AnalysisFailure.id)).where(
        col(AnalysisFailure.failed_at) < cutoff, _reported_cycle(AnalysisFailure.cycle_id)
    )


def _rdap(cutoff: datetime) -> Select[Any]:
    return sa_select(col(RdapContact.id)).where(col(RdapContact.expires_at) < cutoff)


def _simple(model: Any) -> Callable[[Session, list[int]], None]:
    return lambda session, ids: _delete_ids(session, model, ids)


register(
    Rule(
        "sightings",
        "sightings (URL, server address, attribution) of reported cycles",
        lambda r: r.sightings_days,
        _sightings,
        _erase_sightings,
    )
)
register(
    Rule(
        "matched_images",
        "analysed image URLs that matched (kept as long as sightings)",
        lambda r: r.sightings_days,
        _analysed(True),
        _simple(AnalysedImage),
    )
)
register(
    Rule(
        "unmatched_images",
        "analysed image URLs without a match",
        lambda r: r.unmatched_days,
        _analysed(False),
        _simple(AnalysedImage),
    )
)
register(
    Rule(
        "cycle_images",
        "per-cycle log of analysed URLs (resume bookkeeping) of finished cycles",
        lambda r: r.unmatched_days,
        _cycle_images,
        _simple(CycleImage),
    )
)
register(
    Rule(
        "analysis_failures",
        "analysis failures (URL, error code)",
        lambda r: r.failures_days,
        _failures,
        _simple(AnalysisFailure),
    )
)
register(
    Rule(
        "rdap_cache",
        "RDAP answers expired for longer than this",
        lambda r: r.rdap_cache_days,
        _rdap,
        _simple(RdapContact),
    )
)


def _register_notices() -> None:
    """Notices and their URLs, rounds, deliveries and re-checks (helper N's tables)."""
    try:
        from node.notices import models as n
    except ImportError:  # pragma: no cover - notices not installed
        return

    def candidates(cutoff: datetime) -> Select[Any]:
        ended = func.coalesce(col(n.Notice.closed_at), col(n.Notice.decided_at))
        unreported_url = sa_select(col(n.NoticeUrl.notice_id)).where(
            or_(
                (col(n.NoticeUrl.first_notice_at).is_not(None))
                & (col(n.NoticeUrl.noticed_report_id).is_(None)),
                (col(n.NoticeUrl.removed_at).is_not(None))
                & (col(n.NoticeUrl.removal_report_id).is_(None)),
            )
        )
        unreported_round = sa_select(col(n.NoticeRound.notice_id)).where(
            col(n.NoticeRound.sent_at).is_not(None), col(n.NoticeRound.report_id).is_(None)
        )
        return sa_select(col(n.Notice.id)).where(
            col(n.Notice.state).in_((n.CLOSED, n.REJECTED)),
            ended.is_not(None),
            ended < cutoff,
            col(n.Notice.id).not_in(unreported_url),
            col(n.Notice.id).not_in(unreported_round),
        )

    def erase(session: Session, ids: list[int]) -> None:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            urls = sa_select(col(n.NoticeUrl.id)).where(col(n.NoticeUrl.notice_id).in_(chunk))
            session.execute(
                delete(n.RecheckObservation).where(
                    col(n.RecheckObservation.notice_url_id).in_(urls)
                )
            )
            for model in (n.NoticeUrl, n.NoticeDelivery, n.NoticeRound):
                session.execute(delete(model).where(col(model.notice_id).in_(chunk)))
            session.execute(delete(n.Notice).where(col(n.Notice.id).in_(chunk)))

    register(
        Rule(
            "notices",
            "closed or rejected notices with their URLs, rounds, deliveries, re-checks",
            lambda r: r.notices_days,
            candidates,
            erase,
        )
    )


_register_notices()


def _register_discovery() -> None:
    """Candidates and flood-guard holds (issue 14, node/discovery/models.py)."""
    from sqlalchemy import update

    from node.discovery import models as d

    def held(cutoff: datetime) -> Select[Any]:
        # Only decided holds: a sighting still held waits for an analyst.
        return sa_select(col(d.HeldSighting.sighting_id)).where(
            col(d.HeldSighting.state) != d.HELD,
            col(d.HeldSighting.decided_at).is_not(None),
            col(d.HeldSighting.decided_at) < cutoff,
        )

    def erase_held(session: Session, ids: list[int]) -> None:
        _delete_ids(session, d.HeldSighting, ids, d.HeldSighting.sighting_id)

    def clusters(old_enough: ColumnElement[bool]) -> Select[Any]:
        """Every row of the clusters none of whose rows fails ``old_enough`` (the
        representative included), whose first cycle was reported."""
        c = d.Candidate
        head = func.coalesce(col(c.cluster_id), col(c.id))
        young = sa_select(head).where(or_(~old_enough, ~_reported_cycle(c.first_cycle_id)))
        return sa_select(col(c.id)).where(head.not_in(young))

    def decided(cutoff: datetime) -> Select[Any]:
        c = d.Candidate
        return clusters(
            (col(c.state) != d.PENDING)
            & col(c.decided_at).is_not(None)
            & (col(c.decided_at) < cutoff)
        )

    def pending(cutoff: datetime) -> Select[Any]:
        c = d.Candidate
        return clusters((col(c.state) == d.PENDING) & (col(c.last_seen_at) < cutoff))

    def erase_candidates(session: Session, ids: list[int]) -> None:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            session.execute(
                update(d.NegativeEntry)
                .where(col(d.NegativeEntry.candidate_id).in_(chunk))
                .values(candidate_id=None)
            )
        # Members first: they point to their representative (erased with them).
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            session.execute(
                delete(d.Candidate).where(
                    col(d.Candidate.id).in_(chunk), col(d.Candidate.cluster_id).is_not(None)
                )
            )
        _delete_ids(session, d.Candidate, ids)

    register(
        Rule(
            "held_sightings",
            "flood-guard holds an analyst released or discarded (as long as sightings)",
            lambda r: r.sightings_days,
            held,
            erase_held,
        )
    )
    register(
        Rule(
            "candidates_decided",
            "confirmed or rejected candidates (URLs, hashes), after their verdict",
            lambda r: r.candidates_days,
            decided,
            erase_candidates,
        )
    )
    register(
        Rule(
            "candidates_pending",
            "candidates never decided, after they were last seen",
            lambda r: r.pending_candidates_days,
            pending,
            erase_candidates,
        )
    )


_register_discovery()


# ---- running


def run_retention(
    engine: Engine,
    settings: RetentionSettings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    actor: str | None = None,
    reason: str = "",
    only: list[str] | None = None,
) -> list[RuleResult]:
    """Erase (or with ``dry_run`` count) what each rule's retention time has passed."""
    now = now or utcnow()
    unknown = sorted(set(only or []) - set(RULES))
    if unknown:
        raise ValueError(f"unknown record type(s) {', '.join(unknown)} (known: {sorted(RULES)})")
    results = []
    for name, rule in RULES.items():
        if only and name not in only:
            continue
        days = rule.days(settings)
        if days <= 0:
            results.append(RuleResult(name, days, None, 0))
            continue
        cutoff = now - timedelta(days=days)
        with Session(engine) as session, session.begin():
            ids = [int(i) for i in session.execute(rule.candidates(cutoff)).scalars()]
            if ids and not dry_run:
                rule.erase(session, ids)
                audit.record(
                    session,
                    "retention.erase",
                    subject=name,
                    reason=reason or "retention schedule",
                    actor=actor,
                    details={
                        "rule": rule.description,
                        "days": days,
                        "cutoff": cutoff.isoformat(),
                        "count": len(ids),
                    },
                )
        results.append(RuleResult(name, days, cutoff, len(ids)))
    return results


def scheduled_job(
    engine: Engine, settings: RetentionSettings, report: Callable[[str], None]
) -> Callable[[], Awaitable[None]]:
    """The `libra node serve` job: one retention run, off the event loop."""

    async def job() -> None:
        try:
            results = await asyncio.to_thread(
                run_retention, engine, settings, actor="libra-node", reason="retention schedule"
            )
        except SQLAlchemyError as exc:
            report(f"retention failed: {exc}")
            return
        erased = {r.rule: r.count for r in results if r.count}
        report(f"retention: erased {erased}" if erased else "retention: nothing to erase")

    return job
