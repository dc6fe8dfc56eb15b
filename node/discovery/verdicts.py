"""Analysts' verdicts on candidates (issue 14) and what each changes.

A verdict applies to a whole cluster (the representative and its near-duplicates); given a
member's id, it applies to the member's cluster. Each verdict is one transaction with its
audit event; deciding a cluster that is no longer pending is an error and changes nothing.

- ``confirm``: the cluster's hashes (SHA-256, SHA-1, MD5 and PDQ of each image, deduplicated)
  join the private list as one new ListVersion (source and format "discovered"), one record per
  image, through the list store's own batch writer (node.lists.store: encryption at rest,
  deduplication against every list held). From the next cycle on they are matched, counted and
  noticed like any listed item. The caller brings the persisted match index up to date
  (``Verdict.added``, node.matching.index.persist.apply_change); its stamp changed anyway.
- ``reject``: the hashes join the negative list (NegativeEntry), which suppresses future
  candidates and matches of the same image. A rejected image that matches a list entry counts
  against that entry (node.discovery.flags: false-positive control).

A PDQ hash of quality below protocol.hashes.PDQ_MIN_QUALITY is not listed either way: a flat
or tiny image's PDQ collides with too many others (the matcher ignores such queries too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.discovery.flags import DEFAULT_FLAG_AFTER, record_rejected_hits
from node.discovery.models import CONFIRMED, PENDING, REJECTED, Candidate, NegativeEntry
from node.lists import store
from node.lists.base import ImportedRecord, Media
from node.matching.matcher import matchable
from node.models import ListEntry, ListVersion
from protocol.hashes import PDQ_MIN_QUALITY, HashFamily, InvalidHash, normalize
from protocol.models import utcnow

if TYPE_CHECKING:
    from node.matching.matcher import MatchIndex

SOURCE = "discovered"  # ListVersion.source and .format of confirmed candidates
FAMILIES = (HashFamily.SHA256, HashFamily.SHA1, HashFamily.MD5, HashFamily.PDQ)
EXACT = (HashFamily.SHA256, HashFamily.SHA1, HashFamily.MD5)
MAX_CATEGORY = 100
MAX_REASON = 1000


class VerdictError(ValueError):
    """A verdict that cannot be given; ``code``: not_found (404), already_decided (409),
    category_required / reason_required / invalid (422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Verdict:
    candidate_id: int  # the cluster's representative
    state: str
    decided_at: datetime
    member_ids: list[int]  # every candidate row decided, the representative first
    list_version_id: int | None = None  # confirm: the new list version
    entry_ids: list[int] = field(default_factory=list)  # confirm: new list entries
    duplicates: int = 0  # confirm: hashes already on a list
    negative_added: int = 0  # reject: new negative entries
    negative_known: int = 0  # reject: hashes already on the negative list
    negative_removed: int = 0  # confirm: negative entries of the same hashes, withdrawn
    matched_entries: dict[int, int] = field(default_factory=dict)  # reject: entry -> images
    flagged: list[int] = field(default_factory=list)  # reject: entries flagged by it
    # confirm: (entry id, family, value) of the new entries, for the persisted index. Never
    # shown or returned by the API.
    added: list[tuple[int, str, str]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "id": self.candidate_id,
            "state": self.state,
            "decided_at": self.decided_at.isoformat(),
            "candidates": self.member_ids,
        }
        if self.state == CONFIRMED:
            out.update(
                list_version_id=self.list_version_id,
                entry_ids=self.entry_ids,
                duplicates=self.duplicates,
                negative_removed=self.negative_removed,
            )
        else:
            out.update(
                negative_added=self.negative_added,
                negative_known=self.negative_known,
                matched_entries={str(k): v for k, v in sorted(self.matched_entries.items())},
                flagged=self.flagged,
            )
        return out


def _pending_cluster(session: Session, candidate_id: int) -> list[Candidate]:
    """The pending rows of ``candidate_id``'s cluster, representative first, locked for the
    decision (PostgreSQL: row locks; SQLite serialises writers)."""
    row = session.get(Candidate, candidate_id)
    if row is None:
        raise VerdictError("not_found", f"candidate {candidate_id} does not exist")
    head = row.cluster_id if row.cluster_id is not None else candidate_id
    rows = list(
        session.exec(
            select(Candidate)
            .where(or_(col(Candidate.id) == head, col(Candidate.cluster_id) == head))
            .order_by(col(Candidate.cluster_id).is_not(None), col(Candidate.id))
            .with_for_update()
        ).all()
    )
    lead = rows[0]
    if lead.state != PENDING:
        when = lead.decided_at.isoformat() if lead.decided_at else "?"
        raise VerdictError(
            "already_decided",
            f"candidate {head} was already {lead.state} by {lead.decided_by} at {when}",
        )
    return [r for r in rows if r.state == PENDING]


def _hashes_of(c: Candidate) -> list[tuple[HashFamily, str]]:
    """The member's listable hashes, normalised; low-quality PDQ left out."""
    out = []
    for family in FAMILIES:
        value = getattr(c, family.value)
        if value is None:
            continue
        if family is HashFamily.PDQ and (c.pdq_quality or 0) < PDQ_MIN_QUALITY:
            continue
        try:
            out.append((family, normalize(family, value)))
        except InvalidHash as exc:  # stored from the function's answer: a damaged row
            raise VerdictError("invalid", f"candidate {c.id}: {exc}") from None
    return out


def _check_text(value: str, name: str, limit: int, code: str) -> str:
    text = value.strip()
    if not text:
        raise VerdictError(code, f"a {name} is required")
    if len(text) > limit:
        raise VerdictError("invalid", f"the {name} is longer than {limit} characters")
    return text


def _claim(
    session: Session, rows: Sequence[Candidate], state: str, actor: str, reason: str, at: datetime
) -> None:
    """Decide ``rows``, first thing the transaction writes, only where they are still pending:
    a verdict given meanwhile by someone else (SQLite reads without a lock) leaves fewer rows
    to change, and then this one is refused and rolled back."""
    ids = [int(c.id) for c in rows if c.id is not None]
    result = session.execute(
        update(Candidate)
        .where(col(Candidate.id).in_(ids), col(Candidate.state) == PENDING)
        .values(state=state, decided_at=at, decided_by=actor, decision_reason=reason)
    )
    if int(getattr(result, "rowcount", 0)) != len(ids):
        raise VerdictError(
            "already_decided", f"candidate {ids[0]} was decided meanwhile by someone else"
        )


def confirm(
    engine: Engine,
    candidate_id: int,
    actor: str,
    category: str,
    reason: str = "",
    *,
    now: datetime | None = None,
) -> Verdict:
    """Add the cluster's hashes to the private list (one ListVersion, source "discovered")."""
    category = _check_text(category, "category", MAX_CATEGORY, "category_required")
    if len(reason) > MAX_REASON:
        raise VerdictError("invalid", f"the reason is longer than {MAX_REASON} characters")
    at = now or utcnow()
    with Session(engine) as session, session.begin():
        rows = _pending_cluster(session, candidate_id)
        head = rows[0].id
        assert head is not None
        _claim(session, rows, CONFIRMED, actor, reason, at)
        label = f"candidate:{head}"
        version_row = ListVersion(
            source=SOURCE,
            version=f"{at:%Y-%m-%dT%H:%M:%SZ}-candidate-{head}",
            format=SOURCE,
            actor=actor,
            imported_at=at,
        )
        session.add(version_row)
        session.flush()
        version_id = version_row.id
        assert version_id is not None
        records = [
            ImportedRecord(family, value, n, label=label, category=category, media=Media.IMAGE)
            for n, c in enumerate(rows, start=1)
            for family, value in _hashes_of(c)
        ]
        summary = store.ImportSummary(list_version_id=version_id)
        # The import's own batch writer, so dedupe and encryption are exactly an import's.
        for start in range(0, len(records), store.BATCH):
            batch = records[start : start + store.BATCH]
            store.write_records(session, batch, version_id, SOURCE, summary)
        counts = {f.value: n for f, n in sorted(summary.by_family.items())}
        version_row.imported = summary.imported
        version_row.duplicates = summary.duplicates
        version_row.family_counts = json.dumps(counts)
        session.add(version_row)
        new = session.exec(
            select(ListEntry.id, ListEntry.family, ListEntry.value, ListEntry.record).where(
                col(ListEntry.list_version_id) == version_id
            )
        ).all()
        by_record: dict[int, list[int]] = {}
        added: list[tuple[int, str, str]] = []
        for entry_id, family, value, record in new:
            if entry_id is not None:
                added.append((int(entry_id), family, value))
                by_record.setdefault(record or 0, []).append(int(entry_id))
        # An analyst now says this image is material: an older rejection of the same hash
        # must not keep suppressing its matches.
        removed = 0
        for family in FAMILIES:
            values = sorted({r.value for r in records if r.family is family})
            if values:
                result = session.execute(
                    delete(NegativeEntry).where(
                        and_(
                            col(NegativeEntry.family) == family.value,
                            col(NegativeEntry.value).in_(values),
                        )
                    )
                )
                removed += int(getattr(result, "rowcount", 0) or 0)
        for n, c in enumerate(rows, start=1):
            c.category = category
            c.entry_ids = json.dumps(sorted(by_record.get(n, [])))
            session.add(c)
        ids = [int(c.id) for c in rows if c.id is not None]
        entry_ids = sorted(i for i, _, _ in added)
        audit.record(
            session,
            "list.import",
            subject=f"list_version:{version_id}",
            reason=reason,
            actor=actor,
            details={
                "source": SOURCE,
                "version": version_row.version,
                "format": SOURCE,
                "imported": summary.imported,
                "duplicates": summary.duplicates,
                "rejected": 0,
                "withdrawn": 0,
                "reclassified": 0,
                "by_family": counts,
            },
        )
        audit.record(
            session,
            "candidate.confirm",
            subject=f"candidate:{head}",
            reason=reason,
            actor=actor,
            details={
                "candidates": ids,
                "category": category,
                "list_version_id": version_id,
                "entries": len(entry_ids),
                "duplicates": summary.duplicates,
                "negative_removed": removed,
            },
        )
    return Verdict(
        candidate_id=head,
        state=CONFIRMED,
        decided_at=at,
        member_ids=ids,
        list_version_id=version_id,
        entry_ids=entry_ids,
        duplicates=summary.duplicates,
        negative_removed=removed,
        added=added,
    )


def _matched_entries(
    session: Session, rows: Sequence[Candidate], index: MatchIndex | None
) -> dict[int, int]:
    """entry id -> rejected images (cluster rows) that match it. Exact families are looked up
    in the database; PDQ by Hamming distance in ``index`` when given, else by equal value."""
    hits: dict[int, set[int]] = {}
    for c in rows:
        assert c.id is not None
        found: set[int] = set()
        hashes = _hashes_of(c)
        for family, value in hashes:
            if family is HashFamily.PDQ and index is not None:
                found.update(m.entry_id for m in index.lookup(family, [value])[0])
                continue
            found.update(
                int(i)
                for i in session.exec(
                    select(ListEntry.id).where(
                        matchable(),
                        col(ListEntry.family) == family.value,
                        col(ListEntry.value) == value,
                    )
                )
                if i is not None
            )
        for entry_id in found:
            hits.setdefault(entry_id, set()).add(c.id)
    return {entry_id: len(images) for entry_id, images in hits.items()}


def reject(
    engine: Engine,
    candidate_id: int,
    actor: str,
    reason: str,
    *,
    flag_after: int = DEFAULT_FLAG_AFTER,
    index: MatchIndex | None = None,
    now: datetime | None = None,
) -> Verdict:
    """Add the cluster's hashes to the negative list; count matches of list entries."""
    reason = _check_text(reason, "reason", MAX_REASON, "reason_required")
    at = now or utcnow()
    with Session(engine) as session, session.begin():
        rows = _pending_cluster(session, candidate_id)
        head = rows[0].id
        assert head is not None
        _claim(session, rows, REJECTED, actor, reason, at)
        wanted: dict[tuple[str, str], int] = {}
        for c in rows:
            assert c.id is not None
            for family, value in _hashes_of(c):
                wanted.setdefault((family.value, value), c.id)
        known: set[tuple[str, str]] = set()
        for family in FAMILIES:
            values = sorted(v for f, v in wanted if f == family.value)
            if values:
                known.update(
                    (family.value, v)
                    for v in session.exec(
                        select(NegativeEntry.value).where(
                            col(NegativeEntry.family) == family.value,
                            col(NegativeEntry.value).in_(values),
                        )
                    )
                )
        for (family_name, value), owner in wanted.items():
            if (family_name, value) not in known:
                session.add(
                    NegativeEntry(
                        family=family_name,
                        value=value,
                        candidate_id=owner,
                        created_at=at,
                        actor=actor,
                        reason=reason,
                    )
                )
        matched = _matched_entries(session, rows, index)
        flagged = record_rejected_hits(
            session,
            matched,
            flag_after=flag_after,
            actor=actor,
            why=f"matched a rejected candidate ({head})",
            now=at,
        )
        ids = [int(c.id) for c in rows if c.id is not None]
        audit.record(
            session,
            "candidate.reject",
            subject=f"candidate:{head}",
            reason=reason,
            actor=actor,
            details={
                "candidates": ids,
                "negative_added": len(wanted) - len(known),
                "negative_known": len(known),
                "matched_entries": {str(k): v for k, v in sorted(matched.items())},
                "flagged": flagged,
            },
        )
    return Verdict(
        candidate_id=head,
        state=REJECTED,
        decided_at=at,
        member_ids=ids,
        negative_added=len(wanted) - len(known),
        negative_known=len(known),
        matched_entries=matched,
        flagged=flagged,
    )
