"""The tables of discovery (issue 14): candidates, the negative list, flagged list entries and
matches held by the flood guard (migration n0007).

Hash values are stored with the list key like list entries (``EncryptedValue``: deterministic
AES-GCM, so equality lookups still work); URLs are kept in clear like sightings' URLs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from node.keys.list_encryption import EncryptedValue
from node.models import UtcDateTime
from protocol.models import utcnow

# Candidate.state
PENDING = "pending"  # waiting for an analyst
CONFIRMED = "confirmed"  # its hashes joined the private list (source "discovered")
REJECTED = "rejected"  # its hashes joined the negative list
CANDIDATE_STATES = (PENDING, CONFIRMED, REJECTED)

# HeldSighting.state
HELD = "held"  # kept out of reports until an analyst decides
RELEASED = "released"  # reported like any other sighting
DISCARDED = "discarded"  # never reported (a bad entry or a collision attack)
HELD_STATES = (HELD, RELEASED, DISCARDED)


class Candidate(SQLModel, table=True):
    """One unknown image found beside known material, or a near-duplicate of one.

    ``cluster_id`` is None for a cluster's representative (the one an analyst reviews) and the
    representative's id for its members; a verdict on the representative applies to all."""

    __tablename__ = "candidate"
    __table_args__ = (Index("ix_candidate_state_score", "state", "score"),)

    id: int | None = Field(default=None, primary_key=True)
    state: str = Field(default=PENDING, index=True)
    cluster_id: int | None = Field(default=None, foreign_key="candidate.id", index=True)
    members: int = 1  # on a representative: images in its cluster, itself included
    first_cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    last_cycle_id: int
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, index=True)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    times_seen: int = 1  # cycles that found it
    url: str = Field(sa_type=Text)  # storable_url of the image
    final_url: str = Field(sa_type=Text)
    page_url: str = Field(sa_type=Text)
    host: str
    server_ip: str | None = None
    country: str
    asn: int
    hoster: str
    media: str = "image"
    # The function's hashes of the image (never its bytes). sha256 identifies it across cycles.
    sha256: str = Field(sa_type=EncryptedValue, index=True)
    sha1: str | None = Field(default=None, sa_type=EncryptedValue)
    md5: str | None = Field(default=None, sa_type=EncryptedValue)
    pdq: str | None = Field(default=None, sa_type=EncryptedValue)
    pdq_quality: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    bytes: int | None = None
    score: float = Field(default=0.0, index=True)
    # JSON list of {"signal", "value", "points", "detail"}: why it scored what it scored.
    reasons: str = Field(default="[]", sa_type=Text)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime, index=True)
    decided_by: str | None = None
    decision_reason: str | None = Field(default=None, sa_type=Text)
    category: str | None = None  # set on confirmation
    entry_ids: str | None = Field(default=None, sa_type=Text)  # JSON ids of the new list entries


class NegativeEntry(SQLModel, table=True):
    """A hash of a rejected image: suppresses future candidates and matches of that image."""

    __tablename__ = "negative_entry"
    __table_args__ = (UniqueConstraint("family", "value", name="uq_negative_entry_family_value"),)

    id: int | None = Field(default=None, primary_key=True)
    family: str = Field(index=True)  # a protocol.hashes.HashFamily value (sha256, md5, pdq, ...)
    value: str = Field(sa_type=EncryptedValue)
    candidate_id: int | None = Field(default=None, foreign_key="candidate.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    actor: str
    reason: str = Field(default="", sa_type=Text)


class EntryFlag(SQLModel, table=True):
    """False-positive control of one list entry: how often it matched rejected images, and
    whether an analyst disabled it (a disabled entry is never matched; audited)."""

    __tablename__ = "entry_flag"

    entry_id: int = Field(foreign_key="list_entry.id", primary_key=True)
    rejected_hits: int = 0
    flagged_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    disabled_at: datetime | None = Field(default=None, sa_type=UtcDateTime, index=True)
    disabled_by: str | None = None
    reason: str | None = Field(default=None, sa_type=Text)


class HeldSighting(SQLModel, table=True):
    """A sighting the flood guard held: its entry matched far more than its history. Reports
    leave out held and discarded sightings; a released one is reported with its period."""

    __tablename__ = "held_sighting"

    sighting_id: int = Field(foreign_key="sighting.id", primary_key=True)
    entry_id: int = Field(foreign_key="list_entry.id", index=True)
    state: str = Field(default=HELD, index=True)
    held_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime)
    reason: str = Field(default="", sa_type=Text)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    decided_by: str | None = None
