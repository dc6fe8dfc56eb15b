"""Coordinator tables.

They live on their own SQLAlchemy registry, not SQLModel's global one, so that importing
another component's tables in the same process (the demo, a full test run) never mixes the two
schemas or collides on table names.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from .db import UTCDateTime


class CoordinatorModel(SQLModel, registry=registry()):
    """Base of every coordinator table; ``CoordinatorModel.metadata`` holds exactly them."""


class NodeStatus(StrEnum):
    PENDING = "pending"  # enrolled with an invitation, awaiting an admin's approval
    ACTIVE = "active"
    REVOKED = "revoked"


class NodeRow(CoordinatorModel, table=True):
    __tablename__ = "nodes"

    node_id: str = Field(primary_key=True, max_length=63)
    country: str = Field(max_length=2)
    operator: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default=NodeStatus.ACTIVE.value, max_length=16)
    # Highest accepted sequence, kept in the same transaction as the reports it summarises.
    # Ingest advances it with a compare-and-set UPDATE, which serialises one node's concurrent
    # reports on both SQLite and PostgreSQL without explicit locks.
    last_sequence: int | None = Field(default=None, sa_type=BigInteger)
    # Standard base64 X25519 public key: sponsors seal the federation key to it.
    x25519_public_key: str | None = Field(default=None, max_length=64)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NodeKeyRow(CoordinatorModel, table=True):
    __tablename__ = "node_keys"

    key_id: str = Field(primary_key=True, max_length=64)
    node_id: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), nullable=False, index=True)
    )
    public_key: str = Field(max_length=64)  # standard base64 of the 32-byte Ed25519 key
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set when a newer key replaced this one: reports created before it still verify (overlap).
    valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReportRow(CoordinatorModel, table=True):
    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("node_id", "sequence", name="uq_reports_node_sequence"),
        Index("ix_reports_period", "period_start", "period_end"),
    )

    report_id: str = Field(primary_key=True, max_length=32)
    node_id: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), nullable=False, index=True)
    )
    key_id: str = Field(
        sa_column=Column(String(64), ForeignKey("node_keys.key_id"), nullable=False)
    )
    sequence: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)
    period_start: datetime = Field(sa_type=UTCDateTime)
    period_end: datetime = Field(sa_type=UTCDateTime)
    payload_sha256: str = Field(max_length=64)
    # The envelope exactly as received: the signature stays checkable later, by anyone.
    envelope: str = Field(sa_type=Text)
    received_at: datetime = Field(sa_type=UTCDateTime)


class CellRow(CoordinatorModel, table=True):
    __tablename__ = "cells"
    __table_args__ = (
        UniqueConstraint(
            "report_id", "country", "asn", "hoster", "hash_family", name="uq_cells_report_key"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("reports.report_id", ondelete="CASCADE"), nullable=False
        )
    )
    country: str = Field(max_length=2)
    asn: int = Field(sa_type=BigInteger)
    hoster: str = Field(max_length=200)
    hash_family: str = Field(max_length=16)
    matches: int = Field(sa_type=BigInteger)
    distinct: int = Field(sa_type=BigInteger)
    sketch: str | None = Field(default=None, sa_type=Text)
    # The cell's optional `methods` (docs/protocol.md §3): all four NULL = the node did not say.
    m_direct: int | None = Field(default=None, sa_type=BigInteger)
    m_dihedral: int | None = Field(default=None, sa_type=BigInteger)
    m_trimmed: int | None = Field(default=None, sa_type=BigInteger)
    m_region: int | None = Field(default=None, sa_type=BigInteger)
    # Issue 16 (protocol.theta), NULL = the node did not say: base64 Theta sketches exactly as
    # received (keyed final URLs; keyed matched list items) and the distinct item count.
    url_theta: str | None = Field(default=None, sa_type=Text)
    items: int | None = Field(default=None, sa_type=BigInteger)
    item_theta: str | None = Field(default=None, sa_type=Text)


class DenominatorRow(CoordinatorModel, table=True):
    __tablename__ = "denominators"

    report_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("reports.report_id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    pages_fetched: int = Field(sa_type=BigInteger)
    images_hashed: int = Field(sa_type=BigInteger)
    hosts_seen: int = Field(sa_type=BigInteger)


class CoverageRow(CoordinatorModel, table=True):
    """One report's crawl effort at one hoster (protocol HosterCoverage): the denominators of
    that hoster's cells, so prevalence can be given per hoster and country."""

    __tablename__ = "coverage"
    __table_args__ = (
        UniqueConstraint("report_id", "country", "asn", "hoster", name="uq_coverage_report_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("reports.report_id", ondelete="CASCADE"), nullable=False
        )
    )
    country: str = Field(max_length=2)
    asn: int = Field(sa_type=BigInteger)
    hoster: str = Field(max_length=200)
    pages_fetched: int = Field(sa_type=BigInteger)
    images_hashed: int = Field(sa_type=BigInteger)


class ApiTokenRow(CoordinatorModel, table=True):
    """An API token: only the SHA-256 of its secret is kept, never the secret itself."""

    __tablename__ = "api_tokens"

    token_id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    scopes: str = Field(max_length=1000)  # space-separated
    node_id: str | None = Field(default=None, max_length=63)  # node tokens act for one node
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InvitationRow(CoordinatorModel, table=True):
    """A single-use, expiring invitation to enroll one node of one country."""

    __tablename__ = "invitations"

    invitation_id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    country: str = Field(max_length=2)
    note: str | None = Field(default=None, max_length=200)
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_by_node: str | None = Field(default=None, max_length=63)


class AuditRow(CoordinatorModel, table=True):
    """One membership change; ``entry_hash`` chains it to the previous entry."""

    __tablename__ = "audit_log"

    seq: int = Field(primary_key=True, sa_type=BigInteger)
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=200)
    details: str = Field(sa_type=Text)  # canonical JSON
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64, unique=True)


class SealedKeyRow(CoordinatorModel, table=True):
    """A federation key sealed by a sponsor to a node's X25519 key: opaque to the coordinator."""

    __tablename__ = "sealed_keys"
    __table_args__ = (UniqueConstraint("recipient_node", "sponsor_node", name="uq_sealed_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    recipient_node: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), nullable=False, index=True)
    )
    sponsor_node: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), nullable=False)
    )
    # The X25519 key it was sealed to: a blob for an older key is useless after re-enrollment.
    recipient_x25519: str = Field(max_length=64)
    sealed_blob: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)


class RemovalRow(CoordinatorModel, table=True):
    """One report's notices to one hoster and what came of them (protocol HosterRemovals)."""

    __tablename__ = "removals"
    __table_args__ = (
        UniqueConstraint("report_id", "country", "asn", "hoster", name="uq_removals_report_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("reports.report_id", ondelete="CASCADE"), nullable=False
        )
    )
    country: str = Field(max_length=2)
    asn: int = Field(sa_type=BigInteger)
    hoster: str = Field(max_length=200)
    notices_sent: int = Field(sa_type=BigInteger)
    urls_noticed: int = Field(sa_type=BigInteger)
    removed: int = Field(sa_type=BigInteger)
    removed_within_24h: int = Field(sa_type=BigInteger)
    removed_within_72h: int = Field(sa_type=BigInteger)
    median_seconds: int | None = Field(default=None, sa_type=BigInteger)
    p90_seconds: int | None = Field(default=None, sa_type=BigInteger)
    removal_sketch: str | None = Field(default=None, sa_type=Text)  # base64 KLL floats, k=200


class DiscoveryRow(CoordinatorModel, table=True):
    """One report's new material at one hoster (protocol HosterDiscovery, issue 14): candidate
    images first found in the period, and the verdicts analysts gave in it. Counts only."""

    __tablename__ = "discovery"
    __table_args__ = (
        UniqueConstraint("report_id", "country", "asn", "hoster", name="uq_discovery_report_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("reports.report_id", ondelete="CASCADE"), nullable=False
        )
    )
    country: str = Field(max_length=2)
    asn: int = Field(sa_type=BigInteger)
    hoster: str = Field(max_length=200)
    candidates: int = Field(sa_type=BigInteger)
    confirmed: int = Field(sa_type=BigInteger)
    rejected: int = Field(sa_type=BigInteger)


class AttributionSourceRow(CoordinatorModel, table=True):
    """A database snapshot a report's attribution rests on (GeoIP, ASN, operator table)."""

    __tablename__ = "attribution_sources"

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(
        sa_column=Column(
            String(32),
            ForeignKey("reports.report_id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    name: str = Field(max_length=100)
    version: str = Field(max_length=100)


# --- materialised picture rollups (coordinator.rollups) -------------------------------------


class BigCount(TypeDecorator[int]):
    """A non-negative integer sum of any size, kept as decimal text.

    Rollup sums can pass 2^63 (cells carry up to 2^53 each); they are only ever added up in
    Python, never in SQL, so text keeps them exact on SQLite and PostgreSQL alike.
    """

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class RollupQueueRow(CoordinatorModel, table=True):
    """A stored report not yet folded into the rollups; ingest adds it in its transaction."""

    __tablename__ = "rollup_queue"

    report_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("reports.report_id", ondelete="CASCADE"), primary_key=True
        )
    )


class RollupStateRow(CoordinatorModel, table=True):
    """One row; a refresh locks it first, so refreshes never run concurrently."""

    __tablename__ = "rollup_state"

    id: int = Field(primary_key=True)
    refreshes: int = Field(default=0, sa_type=BigInteger)


class RollupNodeRow(CoordinatorModel, table=True):
    """A node's bit in the rollups' contributing-node bitmaps."""

    __tablename__ = "rollup_nodes"

    node_id: str = Field(primary_key=True, max_length=63)
    ordinal: int = Field(unique=True)


class RollupBucketRow(CoordinatorModel, table=True):
    """Level 0: one report period exactly. Level k >= 1: the 2^k-day block (aligned on
    1970-01-01 UTC) holding every period that lies inside it."""

    __tablename__ = "rollup_buckets"
    __table_args__ = (
        UniqueConstraint("level", "span_start", "span_end", name="uq_rollup_buckets_span"),
        Index("ix_rollup_buckets_span", "span_start", "span_end"),
    )

    id: int | None = Field(default=None, primary_key=True)
    level: int
    span_start: datetime = Field(sa_type=UTCDateTime)
    span_end: datetime = Field(sa_type=UTCDateTime)


class PictureRollupRow(CoordinatorModel, table=True):
    """Sums, merged HLL sketch and contributing-node bitmap of one group in one bucket.

    dim "T" (total), "C" (country) or "H" (country, asn, hoster); hash_family "" = all
    families. The "T"/"" row also carries the bucket's report count and denominators.
    """

    __tablename__ = "picture_rollups"

    bucket_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("rollup_buckets.id", ondelete="CASCADE"), primary_key=True
        )
    )
    hash_family: str = Field(primary_key=True, max_length=16)
    dim: str = Field(primary_key=True, max_length=1)
    country: str = Field(primary_key=True, max_length=2)
    asn: int = Field(primary_key=True, sa_type=BigInteger)
    hoster: str = Field(primary_key=True, max_length=200)
    cells: int = Field(sa_type=BigCount)
    matches: int = Field(sa_type=BigCount)
    plain_distinct: int = Field(sa_type=BigCount)  # summed `distinct` of sketchless cells
    sketch: bytes | None = Field(default=None, sa_type=LargeBinary)  # compact HLL_8, lg_k 12
    nodes: bytes = Field(sa_type=LargeBinary)  # little-endian bitmap of rollup_nodes ordinals
    reports: int = Field(sa_type=BigCount)
    pages_fetched: int = Field(sa_type=BigCount)
    images_hashed: int = Field(sa_type=BigCount)
    hosts_seen: int = Field(sa_type=BigCount)
    # `matches` by how they were found; m_unspecified: cells that did not say.
    m_direct: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    m_dihedral: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    m_trimmed: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    m_region: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    m_unspecified: int = Field(
        default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"}
    )
    # Issue 16. theta_cells: the group's cells that carried url_theta; url_theta: their Theta
    # union (compact, lg_k 15). The distinct count comes from it when theta_cells == cells.
    theta_cells: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    url_theta: bytes | None = Field(default=None, sa_type=LargeBinary)
    # Coverage (only on hash_family "" rows, except cov_matches): covered = reports that
    # carried coverage (dim "T") or coverage rows (dims "C", "H"); cov_pages / cov_images their
    # effort; cov_matches the matches of cells in those reports; cov_nodes their nodes' bitmap.
    covered: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    cov_pages: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    cov_images: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    cov_matches: int = Field(default=0, sa_type=BigCount, sa_column_kwargs={"server_default": "0"})
    cov_nodes: bytes | None = Field(default=None, sa_type=LargeBinary)


class TlogLeafRow(CoordinatorModel, table=True):
    """One entry of the transparency log (coordinator/tlog.py): digests only, never content.

    Ingest adds the row in the report's own transaction with ``idx`` NULL; the sequencer then
    gives pending rows consecutive leaf indexes (in ``id`` order) under the state-row lock, so
    concurrent ingests never race for an index and the tree never has a gap.
    """

    __tablename__ = "tlog_leaves"

    id: int | None = Field(default=None, primary_key=True)
    idx: int | None = Field(default=None, sa_type=BigInteger, unique=True)
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, unique=True))
    kind: str = Field(max_length=16)
    data: str = Field(sa_type=Text)  # the canonical JSON leaf (protocol/tlog_leaf.py)
    created_at: datetime = Field(sa_type=UTCDateTime)


class TlogCheckpointRow(CoordinatorModel, table=True):
    """A signed checkpoint (the note text with the log's signature) per tree size."""

    __tablename__ = "tlog_checkpoints"

    size: int = Field(primary_key=True, sa_type=BigInteger)
    root: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    note: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)


class TlogCosignatureRow(CoordinatorModel, table=True):
    """A node's witness cosignature line on the checkpoint of one size (newest kept)."""

    __tablename__ = "tlog_cosignatures"

    size: int = Field(
        sa_column=Column(
            BigInteger, ForeignKey("tlog_checkpoints.size", ondelete="CASCADE"), primary_key=True
        )
    )
    node_id: str = Field(
        sa_column=Column(String(63), ForeignKey("nodes.node_id"), primary_key=True)
    )
    line: str = Field(sa_type=Text)  # "— <name> <base64>" without the newline
    timestamp: int = Field(sa_type=BigInteger)
    received_at: datetime = Field(sa_type=UTCDateTime)


class TlogStateRow(CoordinatorModel, table=True):
    """One row: the sequencer locks it, so leaf indexes are handed out by one writer at once."""

    __tablename__ = "tlog_state"

    id: int = Field(primary_key=True)
    size: int = Field(default=0, sa_type=BigInteger)
