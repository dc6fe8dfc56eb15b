"""The notice tables: notices to hosters, their URLs, send rounds, deliveries, re-checks.

A notice covers one hoster batch (the URLs of one hoster found by one run). Each time the
notice is sent (first notice, re-notices) is a round; each round goes out over one or more
deliveries (an e-mail, a webhook POST), each retried until it succeeds or is marked failed.
Nothing here leaves the node except through a delivery to the hoster's abuse contact; the
signed report carries only the per-hoster figures of node.notices.stats.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from node.models import UtcDateTime, _now

# Notice.state
PENDING_APPROVAL = "pending_approval"
APPROVED = "approved"  # approved (by an analyst or by policy), first round not delivered yet
REJECTED = "rejected"
SENT = "sent"  # delivered at least once; re-checked, re-noticed while the material is there
ESCALATED = "escalated"  # still there after escalate_after notices: no more automatic notices
CLOSED = "closed"  # every URL of the notice was confirmed removed
STATES = (PENDING_APPROVAL, APPROVED, REJECTED, SENT, ESCALATED, CLOSED)
OPEN_STATES = (PENDING_APPROVAL, APPROVED, SENT, ESCALATED)

# NoticeDelivery.status
DELIVERY_PENDING = "pending"
DELIVERY_SENT = "sent"
DELIVERY_FAILED = "failed"  # gave up after max_attempts: kept and shown, never dropped


class Notice(SQLModel, table=True):
    __tablename__ = "notice"

    id: int | None = Field(default=None, primary_key=True)
    country: str
    asn: int
    hoster: str = Field(index=True)
    state: str = Field(default=PENDING_APPROVAL, index=True)
    created_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    decided_by: str | None = None
    decision_reason: str | None = None
    notices_sent: int = 0  # rounds delivered
    first_sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    escalated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Why the next round cannot go out yet (no contact, no channel, ...); None when it can.
    blocked: str | None = None
    contact_source: str | None = None  # of the last round: operator-table / rdap
    contact_reference: str | None = None


class NoticeUrl(SQLModel, table=True):
    """One URL of a notice; removal is tracked per URL."""

    __tablename__ = "notice_url"

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    url: str = Field(sa_type=Text, index=True)  # the sighting's final URL
    server_ip: str | None = None
    sighting_id: int | None = Field(default=None, foreign_key="sighting.id")
    entry_id: int = Field(foreign_key="list_entry.id")
    family: str
    category: str | None = None
    seen_at: datetime = Field(sa_type=UtcDateTime)
    first_notice_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_checked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_outcome: str | None = None  # of the last re-check (node.notices.recheck outcomes)
    last_present_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    removed_at: datetime | None = Field(default=None, sa_type=UtcDateTime, index=True)
    removal_reason: str | None = None  # gone / changed / unreachable
    # The signed reports that carried this URL's "noticed" and "removed" facts (once each).
    noticed_report_id: str | None = Field(default=None, index=True)
    removal_report_id: str | None = Field(default=None, index=True)


class NoticeRound(SQLModel, table=True):
    """The k-th sending of a notice (1 = first notice) and the URLs it named."""

    __tablename__ = "notice_round"
    __table_args__ = (UniqueConstraint("notice_id", "round", name="uq_notice_round"),)

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    round: int
    created_at: datetime = Field(sa_type=UtcDateTime)
    url_ids: str = Field(default="[]", sa_type=Text)  # JSON list of NoticeUrl ids
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)  # first delivery
    report_id: str | None = Field(default=None, index=True)  # the report that counted it


class NoticeDelivery(SQLModel, table=True):
    """One message of a round over one channel, retried with back-off."""

    __tablename__ = "notice_delivery"

    id: int | None = Field(default=None, primary_key=True)
    notice_id: int = Field(foreign_key="notice.id", index=True)
    round: int
    kind: str = "notice"  # notice (to the hoster) or escalation (to the escalation contact)
    channel: str  # smtp or webhook
    destination: str = Field(sa_type=Text)  # comma-separated mailboxes, or the webhook URL
    status: str = Field(default=DELIVERY_PENDING, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UtcDateTime)
    last_error: str | None = None
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class RecheckObservation(SQLModel, table=True):
    __tablename__ = "notice_recheck"

    id: int | None = Field(default=None, primary_key=True)
    notice_url_id: int = Field(foreign_key="notice_url.id", index=True)
    checked_at: datetime = Field(sa_type=UtcDateTime)
    outcome: str
    code: str | None = None  # the function's error code, when it answered with one
    http_status: int | None = None


class NoticeCycle(SQLModel, table=True):
    """A finished crawl cycle whose sightings were turned into notices (each once)."""

    __tablename__ = "notice_cycle"

    cycle_id: int = Field(foreign_key="crawl_cycle.id", primary_key=True)
    processed_at: datetime = Field(sa_type=UtcDateTime)


class NoticeApiToken(SQLModel, table=True):
    """A bearer token of the approval API; only its SHA-256 is stored."""

    __tablename__ = "notice_api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str
    token_sha256: str = Field(unique=True)
    created_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
