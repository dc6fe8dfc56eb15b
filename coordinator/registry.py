"""The node registry: onboarding, key rotation, revocation and the public listing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from protocol.keys import decode_public_key, encode_public_key, key_id

from . import audit
from .errors import DuplicateKey, InvalidRegistration, KeyNotFound, NodeNotFound
from .models import AttributionSourceRow, NodeKeyRow, NodeRow, NodeStatus, ReportRow

# Same shapes the protocol accepts in a report, so every registered node can actually report.
NODE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Registration:
    node_id: str
    key_id: str
    new_node: bool


@dataclass(frozen=True)
class KeyView:
    key_id: str
    created_at: datetime
    revoked_at: datetime | None
    valid_until: datetime | None = None


@dataclass(frozen=True)
class NodeView:
    node_id: str
    country: str
    operator: str | None
    status: str
    created_at: datetime
    keys: list[KeyView]
    reports: int
    last_report_at: datetime | None
    # (name, version) of the databases behind the node's latest report's attribution.
    attribution_sources: list[tuple[str, str]] = field(default_factory=list)


def add_node(
    session: Session,
    *,
    node_id: str,
    country: str,
    public_key_b64: str,
    now: datetime,
    operator: str | None = None,
    overlap: timedelta | None = None,
    actor: str = "operator",
) -> Registration:
    """Register a node with a key, or add a key to an existing node (rotation).

    On rotation with ``overlap``, the node's other current keys stay valid for reports created
    up to ``now + overlap``; without it they stay valid until revoked.
    """
    if not NODE_ID_RE.match(node_id):
        raise InvalidRegistration(
            f"node id {node_id!r} must be 2-63 chars of a-z, 0-9 and '-', not starting with '-'"
        )
    country = country.strip().upper()
    if not COUNTRY_RE.match(country):
        raise InvalidRegistration(f"country {country!r} must be an ISO 3166 alpha-2 code")
    try:
        verify_key = decode_public_key(public_key_b64)
    except ValueError as exc:
        raise InvalidRegistration(str(exc)) from exc
    kid = key_id(verify_key)

    existing_key = session.get(NodeKeyRow, kid)
    if existing_key is not None:
        raise DuplicateKey(f"key {kid} is already registered to node {existing_key.node_id}")

    node = session.get(NodeRow, node_id)
    new_node = node is None
    if node is None:
        node = NodeRow(node_id=node_id, country=country, operator=operator, created_at=now)
    else:
        if node.status == NodeStatus.REVOKED:
            raise InvalidRegistration(f"node {node_id} is revoked; register a new node id")
        if node.country != country:
            raise InvalidRegistration(
                f"node {node_id} is registered with country {node.country}, not {country}"
            )
    try:
        if new_node:
            # Without ORM relationships the key's foreign key needs the node flushed first.
            session.add(node)
            session.flush()
        session.add(
            NodeKeyRow(
                key_id=kid,
                node_id=node_id,
                public_key=encode_public_key(verify_key),
                created_at=now,
            )
        )
        if not new_node and overlap is not None:
            _expire_other_keys(session, node_id, kid, now + overlap)
        audit.append(
            session,
            actor=actor,
            action="node.register" if new_node else "key.rotate",
            subject=node_id,
            now=now,
            details={
                "key_id": kid,
                "country": country,
                "overlap_s": None if overlap is None else int(overlap.total_seconds()),
            },
        )
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        # Another registration of the same key or node won the race.
        raise DuplicateKey(f"key {kid} or node {node_id} was registered concurrently") from exc
    return Registration(node_id=node_id, key_id=kid, new_node=new_node)


def _expire_other_keys(session: Session, node_id: str, keep: str, until: datetime) -> None:
    for key in session.exec(
        select(NodeKeyRow).where(
            col(NodeKeyRow.node_id) == node_id,
            col(NodeKeyRow.key_id) != keep,
            col(NodeKeyRow.revoked_at).is_(None),
        )
    ):
        if key.valid_until is None or key.valid_until > until:
            key.valid_until = until
            session.add(key)


def revoke_key(session: Session, kid: str, *, now: datetime, actor: str = "operator") -> NodeKeyRow:
    """Revoke one key from ``now`` on; an already revoked key keeps its first revocation time."""
    row = session.get(NodeKeyRow, kid)
    if row is None:
        raise KeyNotFound(f"no key with id {kid}")
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        audit.append(
            session, actor=actor, action="key.revoke", subject=row.node_id, now=now,
            details={"key_id": kid},
        )  # fmt: skip
        session.commit()
    return row


def revoke_node(
    session: Session, node_id: str, *, now: datetime, actor: str = "operator"
) -> list[str]:
    """Revoke a node and every key it still holds; returns the key ids revoked now."""
    node = session.get(NodeRow, node_id)
    if node is None:
        raise NodeNotFound(f"no node with id {node_id}")
    node.status = NodeStatus.REVOKED.value
    session.add(node)
    revoked: list[str] = []
    for key in session.exec(
        select(NodeKeyRow).where(
            col(NodeKeyRow.node_id) == node_id, col(NodeKeyRow.revoked_at).is_(None)
        )
    ):
        key.revoked_at = now
        session.add(key)
        revoked.append(key.key_id)
    audit.append(
        session, actor=actor, action="node.revoke", subject=node_id, now=now,
        details={"key_ids": revoked},
    )  # fmt: skip
    session.commit()
    return revoked


def list_nodes(session: Session) -> list[NodeView]:
    """Every node with its keys and report activity, ordered by node id."""
    stats = {
        node_id: (count, last)
        for node_id, count, last in session.exec(
            select(
                col(ReportRow.node_id),
                func.count(col(ReportRow.report_id)),
                func.max(col(ReportRow.received_at)),
            ).group_by(col(ReportRow.node_id))
        )
    }
    keys: dict[str, list[KeyView]] = {}
    for key in session.exec(
        select(NodeKeyRow).order_by(col(NodeKeyRow.created_at), col(NodeKeyRow.key_id))
    ):
        keys.setdefault(key.node_id, []).append(
            KeyView(
                key_id=key.key_id,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
                valid_until=key.valid_until,
            )
        )
    sources = latest_attribution_sources(session)
    views: list[NodeView] = []
    for node in session.exec(select(NodeRow).order_by(col(NodeRow.node_id))):
        count, last = stats.get(node.node_id, (0, None))
        views.append(
            NodeView(
                node_id=node.node_id,
                country=node.country,
                operator=node.operator,
                status=node.status,
                created_at=node.created_at,
                keys=keys.get(node.node_id, []),
                reports=count,
                # Aggregates bypass the column type, so SQLite hands back a naive value.
                last_report_at=_as_utc(last),
                attribution_sources=sources.get(node.node_id, []),
            )
        )
    return views


def latest_attribution_sources(session: Session) -> dict[str, list[tuple[str, str]]]:
    """Per node, the attribution sources its latest report (highest sequence) named."""
    latest = (
        select(col(ReportRow.node_id), func.max(col(ReportRow.sequence)).label("sequence"))
        .group_by(col(ReportRow.node_id))
        .subquery()
    )
    rows = session.exec(
        select(
            col(ReportRow.node_id),
            col(AttributionSourceRow.name),
            col(AttributionSourceRow.version),
        )
        .join(
            latest,
            (latest.c.node_id == col(ReportRow.node_id))
            & (latest.c.sequence == col(ReportRow.sequence)),
        )
        .join(AttributionSourceRow, col(AttributionSourceRow.report_id) == col(ReportRow.report_id))
        .order_by(col(AttributionSourceRow.id))
    )
    sources: dict[str, list[tuple[str, str]]] = {}
    for node_id, name, version in rows:
        sources.setdefault(node_id, []).append((name, version))
    return sources


def _as_utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite returns aggregate datetimes as text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
