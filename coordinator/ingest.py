"""Verified ingest of signed reports: every check in a fixed order, then one transaction.

Order matters: nothing from the payload is trusted (or even parsed) before the signature has
been checked against a registered, unrevoked key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from nacl.signing import VerifyKey
from sqlalchemy import and_, bindparam, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from protocol import REPORT_PAYLOAD_TYPE
from protocol.canonical import MAX_SAFE_INTEGER
from protocol.dsse import parse_envelope, verify
from protocol.errors import (
    KeyMismatch,
    MalformedPayload,
    ProtocolError,
    ReplayedReport,
    RevokedKey,
    SequenceGap,
    SequenceRegression,
    UnknownKey,
)
from protocol.freshness import check_fresh
from protocol.keys import decode_public_key
from protocol.models import Report, ReportAck, ReportCell
from protocol.strictjson import loads as strict_loads

from .errors import ExpiredKey, NodeNotActive, UnknownNode
from .models import (
    AttributionSourceRow,
    CellRow,
    CoverageRow,
    DenominatorRow,
    DiscoveryRow,
    NodeKeyRow,
    NodeRow,
    NodeStatus,
    RemovalRow,
    ReportRow,
    RollupQueueRow,
)
from .sketch_check import check_cell_sketch, check_removal_sketch, check_theta_count
from .tlog import LeafInput, append_reports

log = logging.getLogger(__name__)

_KEY_ID_RE = re.compile(r"[0-9a-f]{64}")
# The most a node's sequence may jump in one report (docs/protocol.md §1, sequence_gap): a
# bad report cannot use up the 2^53 - 1 sequence space, and a node's real reports never
# skip more than a handful.
MAX_SEQUENCE_STEP = 1_000_000


def _sequence_error(node_id: str, sequence: int, last: int | None) -> ProtocolError | None:
    """Regression or gap against the node's highest accepted sequence, else None."""
    if last is not None and sequence <= last:
        return SequenceRegression(
            f"sequence {sequence} is not above node {node_id}'s last sequence"
        )
    if sequence > (last or 0) + MAX_SEQUENCE_STEP:
        return SequenceGap(
            f"sequence {sequence} is more than {MAX_SEQUENCE_STEP} above node {node_id}'s "
            f"last accepted sequence ({last or 0})"
        )
    return None


@dataclass(frozen=True)
class IngestPolicy:
    """Freshness window for created_at (see CoordinatorSettings)."""

    max_report_age: timedelta = timedelta(days=7)
    max_future_skew: timedelta = timedelta(minutes=5)
    # Called with the node id once the signature verified (so nobody can spend another
    # node's budget); raises RateLimited.
    rate_limit: Callable[[str], None] | None = None


Outcome = ReportAck | ProtocolError


class _Contended(Exception):
    """Another transaction moved a node's sequence during a batch: redo it report by report."""


def ingest_batch(
    session: Session,
    bodies: Sequence[bytes | dict[str, Any]],
    now: datetime,
    *,
    policy: IngestPolicy | None = None,
) -> list[Outcome]:
    """Verify and store many envelopes with one commit; each gets its own outcome.

    The outcome of every envelope is what ``ingest`` would have answered for it alone, in
    request order (so a later report of a node may be refused as a regression of an earlier
    one in the same batch). One transaction and bulk inserts make batches far cheaper than
    single reports; if a concurrent writer interferes, the batch is redone report by report.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    policy = policy or IngestPolicy()
    try:
        return _ingest_batch(session, bodies, now, policy)
    except (_Contended, IntegrityError):
        session.rollback()
        # Rate budget was already spent on the first pass; do not spend it twice.
        unlimited = replace(policy, rate_limit=None)
        outcomes: list[Outcome] = []
        for body in bodies:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            try:
                outcomes.append(ingest(session, raw, now, policy=unlimited))
            except ProtocolError as exc:
                outcomes.append(exc)
        return outcomes
    except BaseException:
        session.rollback()
        raise


def _prefetch(session: Session, bodies: Sequence[bytes | dict[str, Any]]) -> dict[Any, Any]:
    """Load the batch's keys and nodes with two queries instead of two per report."""
    kids: set[str] = set()
    for body in bodies:
        try:
            data = strict_loads(body) if isinstance(body, bytes) else body
            kid = data["signatures"][0]["keyid"]
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # _verify reports what is wrong with it
        if isinstance(kid, str) and _KEY_ID_RE.fullmatch(kid):
            kids.add(kid)
    pins: dict[Any, Any] = {("key", kid): None for kid in kids}
    if not kids:
        return pins
    for key in session.exec(select(NodeKeyRow).where(col(NodeKeyRow.key_id).in_(kids))):
        pins[("key", key.key_id)] = key
    node_ids = {key.node_id for key in pins.values() if key is not None}
    for node in session.exec(select(NodeRow).where(col(NodeRow.node_id).in_(node_ids))):
        pins[("node", node.node_id)] = node
    return pins


def _ingest_batch(
    session: Session,
    bodies: Sequence[bytes | dict[str, Any]],
    now: datetime,
    policy: IngestPolicy,
) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(bodies)
    verified: list[tuple[int, _Verified]] = []
    pins = _prefetch(session, bodies)
    for index, body in enumerate(bodies):
        try:
            item = _verify(session, body, now, policy, pins)
        except ProtocolError as exc:
            outcomes[index] = exc
            continue
        verified.append((index, item))

    if verified:
        ids = [item.report.report_id for _, item in verified]
        known: dict[str, str] = dict(
            session.exec(
                select(col(ReportRow.report_id), col(ReportRow.payload_sha256)).where(
                    col(ReportRow.report_id).in_(ids)
                )
            ).all()
        )
        node_ids = {item.report.node_id for _, item in verified}
        last: dict[str, int | None] = dict(
            session.exec(
                select(col(NodeRow.node_id), col(NodeRow.last_sequence)).where(
                    col(NodeRow.node_id).in_(node_ids)
                )
            ).all()
        )
        current = dict(last)
        to_store: list[tuple[int, _Verified]] = []
        for index, item in verified:
            report = item.report
            prior = known.get(report.report_id)
            if prior is not None:
                outcomes[index] = (
                    ReportAck(report_id=report.report_id, status="duplicate")
                    if prior == item.payload_sha256
                    else ReplayedReport(
                        f"report id {report.report_id} was already used for a different report"
                    )
                )
                continue
            refused = _sequence_error(report.node_id, report.sequence, current.get(report.node_id))
            if refused is not None:
                outcomes[index] = refused
                continue
            current[report.node_id] = report.sequence
            known[report.report_id] = item.payload_sha256
            to_store.append((index, item))

        _advance_sequences(session, last, current)
        if to_store:
            _bulk_store(session, [item for _, item in to_store], now)
        session.commit()
        for index, item in to_store:
            outcomes[index] = ReportAck(report_id=item.report.report_id, status="accepted")
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(bodies)
    return done


def _advance_sequences(
    session: Session, before: dict[str, int | None], after: dict[str, int | None]
) -> None:
    """One compare-and-set UPDATE for every node the batch advanced; any node whose sequence
    moved meanwhile makes the row count fall short, and the batch is redone one by one."""
    changed = {node: seq for node, seq in after.items() if seq != before.get(node)}
    if not changed:
        return
    table = NodeRow.__table__  # type: ignore[attr-defined]
    # One statement, executemany: "IS NOT DISTINCT FROM" (IS on SQLite) matches NULL too.
    statement = (
        update(table)
        .where(
            table.c.node_id == bindparam("node"),
            table.c.last_sequence.is_not_distinct_from(bindparam("old")),
        )
        .values(last_sequence=bindparam("new"))
    )
    result = session.connection().execute(
        statement,
        [{"node": node, "old": before.get(node), "new": seq} for node, seq in changed.items()],
    )
    if result.rowcount != len(changed):
        raise _Contended(", ".join(sorted(changed)))


def _bulk_store(session: Session, items: Sequence[_Verified], now: datetime) -> None:
    # Core executemany, parents first (foreign keys): three statements for the whole batch.
    connection = session.connection()
    connection.execute(
        insert(ReportRow),
        [
            {
                "report_id": item.report.report_id,
                "node_id": item.report.node_id,
                "key_id": item.report.key_id,
                "sequence": item.report.sequence,
                "created_at": item.report.created_at,
                "period_start": item.report.period.start,
                "period_end": item.report.period.end,
                "payload_sha256": item.payload_sha256,
                "envelope": item.envelope_json,
                "received_at": now,
            }
            for item in items
        ],
    )
    connection.execute(
        insert(DenominatorRow),
        [
            {"report_id": item.report.report_id, **item.report.denominators.model_dump()}
            for item in items
        ],
    )
    _insert_children(connection, [item.report for item in items])
    # Transparency log (issue 15): each accepted report's leaf, committed with the report.
    append_reports(
        session,
        [
            LeafInput(item.report.node_id, item.report.report_id, item.payload_sha256)
            for item in items
        ],
        now,
    )


def _method_columns(cell: ReportCell) -> dict[str, int | None]:
    """The cell's optional match methods as columns; NULL when the node did not say."""
    m = cell.methods
    return {
        "m_direct": None if m is None else m.direct,
        "m_dihedral": None if m is None else m.dihedral,
        "m_trimmed": None if m is None else m.trimmed,
        "m_region": None if m is None else m.region,
    }


def _insert_children(connection: Any, reports: Sequence[Report]) -> None:
    """Cells, removal statistics, coverage, discovery counts, attribution sources and the
    rollup queue entries: one executemany per table, in the report's transaction."""
    connection.execute(insert(RollupQueueRow), [{"report_id": r.report_id} for r in reports])
    cells = [
        {
            "report_id": report.report_id,
            "country": cell.country,
            "asn": cell.asn,
            "hoster": cell.hoster,
            "hash_family": cell.hash_family.value,
            "matches": cell.matches,
            "distinct": cell.distinct,
            "sketch": cell.sketch,
            **_method_columns(cell),
            "url_theta": cell.url_theta,
            "items": cell.items,
            "item_theta": cell.item_theta,
        }
        for report in reports
        for cell in report.cells
    ]
    if cells:
        connection.execute(insert(CellRow), cells)
    removals = [
        {"report_id": report.report_id, **row.model_dump()}
        for report in reports
        for row in report.removals
    ]
    if removals:
        connection.execute(insert(RemovalRow), removals)
    coverage = [
        {"report_id": report.report_id, **row.model_dump()}
        for report in reports
        for row in report.coverage
    ]
    if coverage:
        connection.execute(insert(CoverageRow), coverage)
    discovery = [
        {"report_id": report.report_id, **row.model_dump()}
        for report in reports
        for row in report.discovery
    ]
    if discovery:
        connection.execute(insert(DiscoveryRow), discovery)  # issue 14
    sources = [
        {"report_id": report.report_id, "name": source.name, "version": source.version}
        for report in reports
        for source in report.attribution_sources
    ]
    if sources:
        connection.execute(insert(AttributionSourceRow), sources)


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


@dataclass(frozen=True)
class _Verified:
    report: Report
    envelope_json: str
    payload_sha256: str


def _verify(
    session: Session,
    raw_body: bytes | dict[str, Any],
    now: datetime,
    policy: IngestPolicy,
    pins: dict[Any, Any] | None = None,
) -> _Verified:
    """Every check that needs no write: signature, key validity, node, freshness, rate.

    ``pins`` (a batch) holds loaded rows strongly: the session's identity map is weak, and
    without it every report of a batch would reload its node and key.
    """
    envelope = parse_envelope(raw_body)
    signer = _KeyResolver(session, now, pins)
    signing_key_id, payload = verify(envelope, REPORT_PAYLOAD_TYPE, signer)
    report = Report.from_payload(payload)
    _check_storable(report)

    if report.key_id != signing_key_id:
        raise KeyMismatch("report key_id differs from the key that signed it")
    key_row = signer.resolved[signing_key_id]
    if signer.node(report.node_id) is None:
        raise UnknownNode(f"node {report.node_id} is not registered")
    if key_row.node_id != report.node_id:
        raise KeyMismatch(f"the signing key does not belong to node {report.node_id}")
    # Rotation: the old key verifies reports created before its overlap window closed, however
    # late they arrive (a node's outbox may hold them for days).
    if key_row.valid_until is not None and report.created_at >= key_row.valid_until:
        raise ExpiredKey(
            f"key {signing_key_id} was replaced; valid for reports created before "
            f"{key_row.valid_until.isoformat()}"
        )
    check_fresh(report.created_at, now, policy.max_report_age, policy.max_future_skew)
    if policy.rate_limit is not None:
        policy.rate_limit(report.node_id)
    return _Verified(
        report=report,
        # Re-serialised from the parsed envelope: payload and signature are byte-identical
        # (base64 text), only insignificant whitespace of the request may differ.
        envelope_json=envelope.model_dump_json(by_alias=True),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
    )


def _ingest(session: Session, raw_body: bytes, now: datetime, policy: IngestPolicy) -> ReportAck:
    verified = _verify(session, raw_body, now, policy)
    report, payload_sha256 = verified.report, verified.payload_sha256
    known = _known_report(session, report.report_id, payload_sha256)
    if known is not None:
        return known

    if not _advance_sequence(session, report.node_id, report.sequence):
        # Lost to a concurrent copy of this very report, a regression or a gap.
        known = _known_report(session, report.report_id, payload_sha256)
        if known is not None:
            return known
        node = session.get(NodeRow, report.node_id, populate_existing=True)
        last = node.last_sequence if node is not None else None
        raise _sequence_error(report.node_id, report.sequence, last) or SequenceRegression(
            f"sequence {report.sequence} of node {report.node_id} lost to a concurrent report"
        )

    try:
        _store(session, report, verified.envelope_json, payload_sha256, now)
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


class _KeyResolver:
    """Registry lookup for protocol.dsse.verify; remembers the row it resolved."""

    def __init__(self, session: Session, now: datetime, pins: dict[Any, Any] | None) -> None:
        self._session = session
        self._now = now
        self._pins: dict[Any, Any] = {} if pins is None else pins
        self.resolved: dict[str, NodeKeyRow] = {}

    def node(self, node_id: str) -> NodeRow | None:
        key = ("node", node_id)
        if key not in self._pins:
            self._pins[key] = self._session.get(NodeRow, node_id)
        row: NodeRow | None = self._pins[key]
        return row

    def __call__(self, kid: str) -> VerifyKey:
        # Registered ids are SHA-256 hex; anything else cannot match and never reaches SQL.
        if not _KEY_ID_RE.fullmatch(kid):
            raise UnknownKey("key id is not a registered key id (64 lowercase hex digits)")
        pin = ("key", kid)
        if pin not in self._pins:
            self._pins[pin] = self._session.get(NodeKeyRow, kid)
        row: NodeKeyRow | None = self._pins[pin]
        if row is None:
            raise UnknownKey(f"key {kid} is not registered")
        if row.revoked_at is not None and row.revoked_at <= self._now:
            raise RevokedKey(f"key {kid} was revoked")
        node = self.node(row.node_id)
        if node is not None and node.status == NodeStatus.PENDING:
            raise NodeNotActive(f"node {row.node_id} awaits an admin's approval")
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
            check_cell_sketch(cell.sketch, cell.distinct)
        if cell.url_theta is not None:
            check_theta_count(cell.url_theta, cell.distinct, "url_theta", "distinct")
        if cell.item_theta is not None and cell.items is not None:
            check_theta_count(cell.item_theta, cell.items, "item_theta", "items")
    for row in report.removals:
        if max(row.notices_sent, row.urls_noticed, row.removed) > MAX_SAFE_INTEGER:
            raise MalformedPayload("removal counts must not exceed 2^53 - 1")
        if not _is_clean_text(row.hoster):
            raise MalformedPayload("removals hoster holds control characters or invalid Unicode")
        if row.removal_sketch is not None:
            check_removal_sketch(row.removal_sketch, row.removed)
    for place in report.coverage:
        if not _is_clean_text(place.hoster):
            raise MalformedPayload("coverage hoster holds control characters or invalid Unicode")
    for found in report.discovery:
        if not _is_clean_text(found.hoster):
            raise MalformedPayload("discovery hoster holds control characters or invalid Unicode")
    for source in report.attribution_sources:
        if not (_is_clean_text(source.name) and _is_clean_text(source.version)):
            raise MalformedPayload("an attribution source holds invalid Unicode")


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _is_clean_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _CONTROL_RE.search(text) is None


def _advance_sequence(session: Session, node_id: str, sequence: int) -> bool:
    """Compare-and-set the node's last sequence; False when ``sequence`` is not above it or
    jumps more than MAX_SEQUENCE_STEP.

    The UPDATE takes the node row's write lock, so two reports of one node cannot both pass.
    """
    last = col(NodeRow.last_sequence)
    allowed = [and_(last < sequence, last >= sequence - MAX_SEQUENCE_STEP)]
    if sequence <= MAX_SEQUENCE_STEP:
        allowed.append(last.is_(None))  # a node's first report
    result = session.exec(
        update(NodeRow)
        .where(col(NodeRow.node_id) == node_id, or_(*allowed))
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
    session.flush()
    # Core executemany instead of an ORM object per row: reports may carry 100k cells.
    _insert_children(session.connection(), [report])
    append_reports(session, [LeafInput(report.node_id, report.report_id, payload_sha256)], now)
