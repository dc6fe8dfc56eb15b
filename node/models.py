"""The node's own database tables. Nothing here ever leaves the node.

Image bytes are never stored. For analysed images the node keeps only what matching and
reporting need: where the image was served from and which list entry it matched (not the
queried hash values).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Index, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from node.keys.list_encryption import EncryptedValue
from protocol.models import utcnow


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns timezone-aware UTC (SQLite would otherwise hand back naive times)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the node stores UTC-aware timestamps only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return utcnow()


class ListVersion(SQLModel, table=True):
    """One import of a hash list file."""

    __tablename__ = "list_version"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(index=True)
    version: str
    format: str
    imported_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    # {"pdq": 12, ...}: new entries per family (JSON), for `list show`.
    family_counts: str = Field(default="{}", sa_type=Text)
    actor: str | None = None
    removed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    removed: int = 0
    # Change feeds (NCMEC): entries this import withdrew, and entries it re-classified.
    withdrawn: int = 0
    reclassified: int = 0


class ListEntry(SQLModel, table=True):
    """One known hash. (family, value) is unique across all imported lists."""

    __tablename__ = "list_entry"
    __table_args__ = (
        UniqueConstraint("family", "value", name="uq_list_entry_family_value"),
        # Issue 16: a matched entry's record siblings name the item
        # (node/federation/report_items.py).
        Index("ix_list_entry_version_record", "list_version_id", "record"),
    )

    id: int | None = Field(default=None, primary_key=True)
    family: str = Field(index=True)
    # AES-GCM ciphertext in the database when the engine has a list key (node.keys.list_encryption).
    value: str = Field(sa_type=EncryptedValue)
    list_version_id: int = Field(foreign_key="list_version.id", index=True)
    # Indexed: an NCMEC deletion or update names the entry by its id, kept as the label.
    label: str | None = Field(default=None, index=True)
    category: str | None = None
    media: str = "image"  # node.lists.Media: what the hash was computed over
    # Record number in the imported file: values of one source record (a VICS Media, an
    # NCMEC entry, an ICSE row) are exported together again, and only they.
    record: int | None = None
    # Removed from its list but still referenced by a sighting: kept for the record, never
    # matched; a later import of the same value revives it.
    retired: bool = Field(default=False, index=True)
    # Derived data (issue 18): PDQ of overlapping regions of the listed image, space-separated,
    # from `libra hash --regions`; matched as method "region" (crops). Never exported.
    regions: str | None = Field(default=None, sa_type=EncryptedValue)


RUNNING = "running"  # CrawlCycle.status while the cycle runs; then "done" or "failed"


class CrawlCycle(SQLModel, table=True):
    __tablename__ = "crawl_cycle"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    status: str = RUNNING
    error: str | None = None
    pages_fetched: int = 0
    pages_failed: int = 0
    images_found: int = 0
    images_hashed: int = 0
    analysis_failures: int = 0
    matches: int = 0
    hosts_seen: int = 0
    # Of images_found / images_hashed: the videos (issue 13).
    videos_found: int = 0
    videos_hashed: int = 0
    # Issue 14: new candidates this cycle found, matches the negative list suppressed, and
    # sightings the flood guard held back from reports.
    candidates: int = 0
    suppressed: int = 0
    held: int = 0
    # The report that carried this cycle: each finished cycle is reported exactly once, because
    # the coordinator adds up every report it receives.
    report_id: str | None = Field(default=None, index=True)


class HostPages(SQLModel, table=True):
    """Page counts per host per cycle: the source of the hosts_seen denominator."""

    __tablename__ = "host_pages"
    __table_args__ = (UniqueConstraint("cycle_id", "host", name="uq_host_pages_cycle_host"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    host: str
    pages_fetched: int = 0
    pages_failed: int = 0
    images_found: int = 0


class AnalysedImage(SQLModel, table=True):
    """An image URL the function hashed; the matched entry if any, never the hash values."""

    __tablename__ = "analysed_image"

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    url: str = Field(sa_type=Text)
    final_url: str = Field(sa_type=Text)
    server_ip: str | None = None
    analysed_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
    entry_id: int | None = Field(default=None, foreign_key="list_entry.id")
    distance: int | None = None
    # Issue 16: where the image was served from, placed at record time by the same attributor
    # call as a sighting of it would be (the per-hoster images_hashed of a report's coverage).
    # Null for images analysed before migration n0005: their cycles report no coverage.
    country: str | None = None
    asn: int | None = None
    hoster: str | None = None


class HosterPages(SQLModel, table=True):
    """Issue 16: HTML pages a cycle fetched per hoster, attributed by the address that served
    each page (the crawler's pinned connection), like sightings; the report's coverage."""

    __tablename__ = "hoster_pages"
    __table_args__ = (
        UniqueConstraint("cycle_id", "country", "asn", "hoster", name="uq_hoster_pages_cycle"),
    )

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    country: str
    asn: int
    hoster: str
    pages_fetched: int = 0


class Sighting(SQLModel, table=True):
    """A listed image seen on the web: one per distinct image URL per cycle (best family)."""

    __tablename__ = "sighting"
    __table_args__ = (UniqueConstraint("cycle_id", "url", name="uq_sighting_cycle_url"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    url: str = Field(sa_type=Text)
    final_url: str = Field(sa_type=Text)
    server_ip: str | None = None
    country: str
    asn: int
    hoster: str
    family: str
    entry_id: int = Field(foreign_key="list_entry.id")
    distance: int
    seen_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime, index=True)
    # How the match was found (node.matching.matcher.Method: direct, dihedral, trimmed, region): how
    # much material is disguised to evade hashing (issue 18).
    method: str = "direct"


class CycleImage(SQLModel, table=True):
    """An image URL of a cycle that was analysed (dispatched and answered: a result or a final
    failure). Written in the same transaction as its AnalysedImage/Sighting or AnalysisFailure,
    so after a kill the database says exactly which images a resumed cycle must not re-send."""

    __tablename__ = "cycle_image"
    __table_args__ = (UniqueConstraint("cycle_id", "url", name="uq_cycle_image_cycle_url"),)

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    url: str = Field(sa_type=Text)  # storable_url: a data: URI is stored as its digest
    outcome: str  # "hashed" or "failed"
    media: str = "image"  # "video" for a video URL (issue 13: a resumed cycle counts its videos)


class CycleRun(SQLModel, table=True):
    """The crawl (seed list, see node.crawl.crawler.run_key) a cycle runs: a restart over the same
    seeds continues the cycle its killed predecessor left running."""

    __tablename__ = "cycle_run"

    cycle_id: int = Field(foreign_key="crawl_cycle.id", primary_key=True)
    run_key: str = Field(index=True)


class AnalysisFailure(SQLModel, table=True):
    __tablename__ = "analysis_failure"

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="crawl_cycle.id", index=True)
    url: str = Field(sa_type=Text)
    code: str
    message: str = ""
    http_status: int | None = None
    failed_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)


class OutboxItem(SQLModel, table=True):
    """A signed report waiting for the coordinator's acknowledgement (store and forward)."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(unique=True)
    sequence: int = Field(unique=True)
    period_start: datetime = Field(sa_type=UtcDateTime)
    period_end: datetime = Field(sa_type=UtcDateTime)
    envelope: str = Field(sa_type=Text)  # the DSSE envelope JSON, exactly as it is sent
    created_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
    attempts: int = 0
    last_error: str | None = None
    # Set when the coordinator answered 4xx: kept for the operator, not retried automatically.
    rejected_code: str | None = None


class NodeState(SQLModel, table=True):
    """A single row (id = 1) of node-wide counters."""

    __tablename__ = "node_state"

    id: int = Field(default=1, primary_key=True)
    next_sequence: int = 1


# ---- issue 7 part C: attribution snapshots, RDAP contact cache (docs/attribution.md)


class AttributionSnapshot(SQLModel, table=True):
    """The set of databases (GeoIP country, ASN, operator table) one attribution rested on."""

    __tablename__ = "attribution_snapshot"

    id: int | None = Field(default=None, primary_key=True)
    # SHA-256 of the canonical sources JSON: one row per distinct set of database versions.
    digest: str = Field(unique=True)
    sources: str = Field(sa_type=Text)  # JSON [[name, version], ...], sorted
    first_used_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)


class SightingAttribution(SQLModel, table=True):
    """Which snapshot placed a sighting, and the operator-table entry that matched (if any)."""

    __tablename__ = "sighting_attribution"

    sighting_id: int = Field(foreign_key="sighting.id", primary_key=True)
    snapshot_id: int = Field(foreign_key="attribution_snapshot.id", index=True)
    operator_id: str | None = None


class RdapContact(SQLModel, table=True):
    """A cached RDAP answer for one query (``ip:192.0.2.7`` or ``autnum:64496``)."""

    __tablename__ = "rdap_contact"

    id: int | None = Field(default=None, primary_key=True)
    query: str = Field(unique=True)
    fetched_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)
    ok: bool  # False: the query failed (error says why); cached for the shorter negative time
    emails: str = Field(default="[]", sa_type=Text)  # JSON list of abuse addresses
    handle: str | None = None  # RDAP handle of the abuse entity (or the object) answering
    server: str | None = None  # RDAP base URL asked
    error: str | None = None


# ---- issue 15: the node as a witness of the coordinator's transparency log


class SentReport(SQLModel, table=True):
    """A report the coordinator acknowledged: what `libra node log verify` expects in the log.

    Only ids and the SHA-256 of the signed payload (the same digest the log leaf holds).
    """

    __tablename__ = "tlog_sent"

    report_id: str = Field(primary_key=True)
    node_id: str
    payload_sha256: str
    delivered_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
    # Set once an inclusion proof verified; later runs only check consistency for it.
    verified_size: int | None = None


class LogWitnessState(SQLModel, table=True):
    """One row (id = 1): the log key pinned on first use and the last checkpoint verified."""

    __tablename__ = "tlog_witness"

    id: int = Field(default=1, primary_key=True)
    origin: str
    public_key: str  # standard base64 Ed25519 key of the log (pinned on first verify)
    size: int
    root: str  # standard base64
    checkpoint: str = Field(sa_type=Text)  # the note as verified (evidence in a dispute)
    verified_at: datetime = Field(default_factory=_now, sa_type=UtcDateTime)
