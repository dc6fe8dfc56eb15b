"""Verified ingest of signed reports: every check in a fixed order, then one transaction.

Order matters: nothing from the payload is trusted (or even parsed) before the signature has
been checked against a registered, unrevoked key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from datasketches import hll_sketch
from nacl.signing import VerifyKey
from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from protocol import REPORT_PAYLOAD_TYPE
from protocol.canonical import MAX_SAFE_INTEGER
from protocol.dsse import Envelope, parse_envelope, verify
from protocol.errors import (
    KeyMismatch,
    MalformedEnvelope,
    MalformedPayload,
    ReplayedReport,
    RevokedKey,
    SequenceRegression,
    UnknownKey,
)
from protocol.freshness import check_fresh
from protocol.keys import decode_public_key
from protocol.models import Report, ReportAck

from .errors import UnknownNode
from .models import CellRow, DenominatorRow, NodeKeyRow, NodeRow, NodeStatus, ReportRow

log = logging.getLogger(__name__)

_KEY_ID_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class IngestPolicy:
    """Freshness window for created_at (see CoordinatorSettings)."""

    max_report_age: timedelta = timedelta(days=7)
    max_future_skew: timedelta = timedelta(minutes=5)


def ingest(
    session: Session,
    raw_body: bytes,
    now: datetime,
    *,
    policy: IngestPolicy | None = None,
) -> ReportAck:
    """Verify and store one DSSE report envelope, or raise the ProtocolError that explains why not.

    Commits on success; on any failure the session is rolled back and nothing is stored.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    policy = policy or IngestPolicy()
    try:
        return _ingest(session, raw_body, now, policy)
    except BaseException:
        session.rollback()
        raise


def _ingest(session: Session, raw_body: bytes, now: datetime, policy: IngestPolicy) -> ReportAck:
    envelope = parse_envelope(raw_body)
    _check_ascii(envelope)
    signer = _KeyResolver(session, now)
    signing_key_id, payload = verify(envelope, REPORT_PAYLOAD_TYPE, signer)
    report = Report.from_payload(payload)

    if report.key_id != signing_key_id:
        raise KeyMismatch("report key_id differs from the key that signed it")
    key_row = signer.resolved[signing_key_id]
    if session.get(NodeRow, report.node_id) is None:
        raise UnknownNode(f"node {report.node_id} is not registered")
    if key_row.node_id != report.node_id:
        raise KeyMismatch(f"the signing key does not belong to node {report.node_id}")

    check_fresh(report.created_at, now, policy.max_report_age, policy.max_future_skew)

    payload_sha256 = hashlib.sha256(payload).hexdigest()
    known = _known_report(session, report.report_id, payload_sha256)
    if known is not None:
        return known

    _check_storable(report)

    if not _advance_sequence(session, report.node_id, report.sequence):
        # Lost to a concurrent copy of this very report, or a genuine regression.
        known = _known_report(session, report.report_id, payload_sha256)
        if known is not None:
            return known
        raise SequenceRegression(
            f"sequence {report.sequence} is not above node {report.node_id}'s last sequence"
        )

    try:
        _store(session, report, envelope.model_dump_json(by_alias=True), payload_sha256, now)
        session.commit()
    except IntegrityError:
        session.rollback()
        known = _known_report(session, report.report_id, payload_sha256)
        if known is not None:
            return known
        raise SequenceRegression(
            f"sequence {report.sequence} of node {report.node_id} is already stored"
        ) from None
    log.info(
        "accepted report %s from %s (sequence %d, %d cells)",
        report.report_id,
        report.node_id,
        report.sequence,
        len(report.cells),
    )
    return ReportAck(report_id=report.report_id, status="accepted")


def _check_ascii(envelope: Envelope) -> None:
    # protocol.dsse decodes base64 catching only binascii.Error; non-ASCII text raises a plain
    # ValueError there, so refuse it here with the right code first.
    texts = [envelope.payload, *(s.sig for s in envelope.signatures)]
    if not all(text.isascii() for text in texts):
        raise MalformedEnvelope("payload and signatures must be standard base64 (ASCII)")


class _KeyResolver:
    """Registry lookup for protocol.dsse.verify; remembers the row it resolved."""

    def __init__(self, session: Session, now: datetime) -> None:
        self._session = session
        self._now = now
        self.resolved: dict[str, NodeKeyRow] = {}

    def __call__(self, kid: str) -> VerifyKey:
        # Registered ids are SHA-256 hex; anything else cannot match and never reaches SQL.
        if not _KEY_ID_RE.fullmatch(kid):
            raise UnknownKey("key id is not a registered key id (64 lowercase hex digits)")
        row = self._session.get(NodeKeyRow, kid)
        if row is None:
            raise UnknownKey(f"key {kid} is not registered")
        if row.revoked_at is not None and row.revoked_at <= self._now:
            raise RevokedKey(f"key {kid} was revoked")
        node = self._session.get(NodeRow, row.node_id)
        if node is None or node.status != NodeStatus.ACTIVE:
            raise RevokedKey(f"node {row.node_id} is revoked")
        self.resolved[kid] = row
        return decode_public_key(row.public_key)


def _known_report(session: Session, report_id: str, payload_sha256: str) -> ReportAck | None:
    """Ack an exact resend; refuse the same report id carrying different bytes."""
    stored = session.get(ReportRow, report_id, populate_existing=True)
    if stored is None:
        return None
    if stored.payload_sha256 == payload_sha256:
        return ReportAck(report_id=report_id, status="duplicate")
    raise ReplayedReport(f"report id {report_id} was already used for a different report")


def _check_storable(report: Report) -> None:
    """Refuse values the schema allows but storage or aggregation cannot take safely.

    Counts above 2^53 cannot be signed by a conforming node (canonical JSON refuses them) and
    would overflow sums; control characters and lone surrogates break SQL text columns.
    Decoding every sketch here means the picture can trust each stored one.
    """
    counts = report.denominators.model_dump().values()
    if any(value > MAX_SAFE_INTEGER for value in counts):
        raise MalformedPayload("denominators must not exceed 2^53 - 1")
    for cell in report.cells:
        if cell.matches > MAX_SAFE_INTEGER or cell.distinct > MAX_SAFE_INTEGER:
            raise MalformedPayload("cell counts must not exceed 2^53 - 1")
        if not _is_clean_text(cell.hoster):
            raise MalformedPayload("cell hoster holds control characters or invalid Unicode")
        if cell.sketch is not None:
            _check_sketch(cell.sketch)


def _is_clean_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _check_sketch(sketch_b64: str) -> None:
    try:
        sketch = hll_sketch.deserialize(base64.b64decode(sketch_b64, validate=True))
        estimate = sketch.get_estimate()
    except (binascii.Error, ValueError, RuntimeError) as exc:
        raise MalformedPayload("a cell sketch is not a base64 DataSketches HLL sketch") from exc
    if not math.isfinite(estimate) or estimate < 0:
        raise MalformedPayload("a cell sketch has no usable estimate")


def _advance_sequence(session: Session, node_id: str, sequence: int) -> bool:
    """Compare-and-set the node's last sequence; False when ``sequence`` is not above it.

    The UPDATE takes the node row's write lock, so two reports of one node cannot both pass.
    """
    result = session.exec(
        update(NodeRow)
        .where(
            col(NodeRow.node_id) == node_id,
            or_(col(NodeRow.last_sequence).is_(None), col(NodeRow.last_sequence) < sequence),
        )
        .values(last_sequence=sequence)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _store(
    session: Session, report: Report, envelope_json: str, payload_sha256: str, now: datetime
) -> None:
    session.add(
        ReportRow(
            report_id=report.report_id,
            node_id=report.node_id,
            key_id=report.key_id,
            sequence=report.sequence,
            created_at=report.created_at,
            period_start=report.period.start,
            period_end=report.period.end,
            payload_sha256=payload_sha256,
            # Re-serialised from the parsed envelope: payload and signature are byte-identical
            # (base64 text), only insignificant whitespace of the request may differ.
            envelope=envelope_json,
            received_at=now,
        )
    )
    # Flush the parent first: the cells' foreign key needs it on PostgreSQL.
    session.flush()
    session.add(
        DenominatorRow(
            report_id=report.report_id,
            pages_fetched=report.denominators.pages_fetched,
            images_hashed=report.denominators.images_hashed,
            hosts_seen=report.denominators.hosts_seen,
        )
    )
    if report.cells:
        # One executemany instead of an ORM object per cell: reports may carry 100k cells.
        session.exec(
            insert(CellRow),
            params=[
                {
                    "report_id": report.report_id,
                    "country": cell.country,
                    "asn": cell.asn,
                    "hoster": cell.hoster,
                    "hash_family": cell.hash_family.value,
                    "matches": cell.matches,
                    "distinct": cell.distinct,
                    "sketch": cell.sketch,
                }
                for cell in report.cells
            ],
        )
