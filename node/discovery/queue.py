"""The candidate queue (issue 14): what an analyst reviews, and the evidence of one candidate.

Listing gives cluster representatives by default (one row per distinct image), best score
first, then the most recently seen. Showing one gives where to look -- URL, page, final URL,
host, hoster/ASN/country, when and how often it was seen, size, format, PDQ quality, the
score with its reasons, its cluster's members' URLs -- never an image. Hash values appear
only on explicit request (``hashes=True``: the analyst's authorised tool may need them).
Callers audit each consultation (``consulted``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node import audit
from node.discovery.models import CANDIDATE_STATES, Candidate

MAX_LIMIT = 1000


class QueueError(ValueError):
    """A queue request that cannot be answered; ``code`` is not_found or invalid_filter."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Filters:
    """What ``list_candidates`` selects. ``state`` None: every state."""

    state: str | None = "pending"
    host: str | None = None
    hoster: str | None = None
    country: str | None = None
    min_score: float | None = None
    members: bool = False  # also cluster members (not only representatives)
    limit: int = 100
    offset: int = 0

    def check(self) -> None:
        if self.state is not None and self.state not in CANDIDATE_STATES:
            raise QueueError(
                "invalid_filter", f"state must be one of {', '.join(CANDIDATE_STATES)} or all"
            )
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueueError("invalid_filter", f"limit must be 1..{MAX_LIMIT}")
        if self.offset < 0:
            raise QueueError("invalid_filter", "offset must be 0 or more")
        if self.min_score is not None and not 0 <= self.min_score <= 100:
            raise QueueError("invalid_filter", "min score must be 0..100")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def summary(c: Candidate) -> dict[str, Any]:
    """One queue row: where to look and why it scored, no hash value."""
    return {
        "id": c.id,
        "state": c.state,
        "score": c.score,
        "members": c.members,
        "cluster_id": c.cluster_id,
        "url": c.url,
        "page_url": c.page_url,
        "host": c.host,
        "hoster": c.hoster,
        "asn": c.asn,
        "country": c.country,
        "times_seen": c.times_seen,
        "first_seen_at": _iso(c.first_seen_at),
        "last_seen_at": _iso(c.last_seen_at),
    }


def list_candidates(engine: Engine, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Candidates by score (highest first), then last seen (latest first), then id."""
    f = filters or Filters()
    f.check()
    query = select(Candidate)
    if not f.members:
        query = query.where(col(Candidate.cluster_id).is_(None))
    if f.state is not None:
        query = query.where(col(Candidate.state) == f.state)
    if f.host is not None:
        query = query.where(col(Candidate.host) == f.host.lower())
    if f.hoster is not None:
        query = query.where(col(Candidate.hoster) == f.hoster)
    if f.country is not None:
        query = query.where(col(Candidate.country) == f.country.upper())
    if f.min_score is not None:
        query = query.where(col(Candidate.score) >= f.min_score)
    query = (
        query.order_by(
            col(Candidate.score).desc(), col(Candidate.last_seen_at).desc(), col(Candidate.id)
        )
        .offset(f.offset)
        .limit(f.limit)
    )
    with Session(engine) as session:
        return [summary(c) for c in session.exec(query).all()]


def _hashes(c: Candidate) -> dict[str, Any]:
    return {"sha256": c.sha256, "sha1": c.sha1, "md5": c.md5, "pdq": c.pdq}


def candidate_detail(engine: Engine, candidate_id: int, *, hashes: bool = False) -> dict[str, Any]:
    """The evidence of one candidate and its cluster; hash values only with ``hashes``."""
    with Session(engine) as session:
        c = session.get(Candidate, candidate_id)
        if c is None:
            raise QueueError("not_found", f"candidate {candidate_id} does not exist")
        head = c.cluster_id if c.cluster_id is not None else candidate_id
        cluster = session.exec(
            select(Candidate)
            .where((col(Candidate.id) == head) | (col(Candidate.cluster_id) == head))
            .order_by(col(Candidate.score).desc(), col(Candidate.id))
        ).all()
    detail = summary(c)
    detail.update(
        {
            "final_url": c.final_url,
            "server_ip": c.server_ip,
            "media": c.media,
            "width": c.width,
            "height": c.height,
            "format": c.format,
            "bytes": c.bytes,
            "pdq_quality": c.pdq_quality,
            "first_cycle_id": c.first_cycle_id,
            "last_cycle_id": c.last_cycle_id,
            "reasons": json.loads(c.reasons or "[]"),
            "representative_id": head,
            "decision": {
                "decided_at": _iso(c.decided_at),
                "decided_by": c.decided_by,
                "reason": c.decision_reason,
                "category": c.category,
                "entry_ids": json.loads(c.entry_ids) if c.entry_ids else [],
            },
        }
    )
    cluster_rows = []
    for m in cluster:
        row: dict[str, Any] = {
            "id": m.id,
            "url": m.url,
            "page_url": m.page_url,
            "host": m.host,
            "score": m.score,
            "pdq_quality": m.pdq_quality,
            "representative": m.cluster_id is None,
        }
        if hashes:
            row["hashes"] = _hashes(m)
        cluster_rows.append(row)
    detail["cluster"] = cluster_rows
    if hashes:
        detail["hashes"] = _hashes(c)
    return detail


def consulted(
    engine: Engine, subject: str, *, actor: str | None, via: str, details: dict[str, Any]
) -> None:
    """Audit one consultation of the queue (every list and show, CLI or API)."""
    audit.log(
        engine,
        "candidate.consult",
        subject=subject,
        actor=actor,
        reason=f"candidates {via}",
        details=details,
    )
