"""Builders for signed test reports. Keys come from fixed public test seeds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from datasketches import HLL_8, hll_sketch, kll_floats_sketch
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from coordinator.db import new_session
from coordinator.models import CellRow, DenominatorRow, ReportRow
from coordinator.registry import add_node
from protocol import PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from protocol.dsse import sign
from protocol.hashes import HashFamily, ReportFamily
from protocol.keys import NodeKey
from protocol.models import (
    AttributionSource,
    Denominators,
    HosterRemovals,
    MatchMethods,
    Period,
    Report,
    ReportCell,
    new_report_id,
)

DAY_START = datetime(2026, 11, 23, tzinfo=UTC)
FEDERATION_KEY = b"test federation key (public test material)"


def fixed_key(n: int) -> NodeKey:
    return NodeKey.from_seed_b64(base64.b64encode(bytes([n]) * 32).decode())


def sketch_b64(items: Iterable[str]) -> str:
    """What a node sends: an HLL over HMAC(federation key, item)."""
    sketch = hll_sketch(12, HLL_8)
    for item in items:
        sketch.update(hmac.new(FEDERATION_KEY, item.encode(), hashlib.sha256).hexdigest())
    return base64.b64encode(sketch.serialize_compact()).decode()


def cell(
    country: str = "DE",
    asn: int = 64501,
    hoster: str = "Hoster A Ltd",
    family: HashFamily | ReportFamily = HashFamily.PDQ,
    matches: int = 3,
    distinct: int = 2,
    sketch: str | None = None,
    methods: MatchMethods | None = None,
) -> ReportCell:
    return ReportCell(
        country=country,
        asn=asn,
        hoster=hoster,
        hash_family=ReportFamily(family.value),
        matches=matches,
        distinct=distinct,
        sketch=sketch,
        methods=methods,
    )


def make_report(
    key: NodeKey,
    node_id: str = "node-a",
    *,
    sequence: int = 1,
    created_at: datetime,
    period_start: datetime = DAY_START,
    period_days: int = 1,
    cells: Sequence[ReportCell] | None = None,
    denominators: Denominators | None = None,
    report_id: str | None = None,
    key_id: str | None = None,
    removals: Sequence[HosterRemovals] = (),
    attribution_sources: Sequence[AttributionSource] = (),
) -> Report:
    return Report(
        protocol_version=PROTOCOL_VERSION,
        report_id=report_id or new_report_id(),
        node_id=node_id,
        key_id=key_id or key.key_id,
        sequence=sequence,
        created_at=created_at,
        period=Period(start=period_start, end=period_start + timedelta(days=period_days)),
        cells=list(cells) if cells is not None else [cell()],
        denominators=denominators or Denominators(pages_fetched=10, images_hashed=40, hosts_seen=3),
        removals=list(removals),
        attribution_sources=list(attribution_sources),
    )


def kll_b64(seconds: Sequence[float]) -> str:
    """What a node sends: a KLL float sketch (k = 200) of the times to removal."""
    sketch = kll_floats_sketch(200)
    for value in seconds:
        sketch.update(value)
    return base64.b64encode(sketch.serialize()).decode()


def removal(
    seconds: Sequence[float],
    *,
    country: str = "DE",
    asn: int = 64501,
    hoster: str = "Hoster A Ltd",
    notices_sent: int | None = None,
    urls_noticed: int | None = None,
    with_sketch: bool = True,
) -> HosterRemovals:
    """A removals row whose counts and exact figures follow from the given times."""
    ordered = sorted(seconds)
    n = len(ordered)
    median = p90 = None
    if n:
        exact = kll_floats_sketch(200)
        for value in ordered:
            exact.update(value)
        median, p90 = round(exact.get_quantile(0.5)), round(exact.get_quantile(0.9))
    return HosterRemovals(
        country=country,
        asn=asn,
        hoster=hoster,
        notices_sent=n + 1 if notices_sent is None else notices_sent,
        urls_noticed=n if urls_noticed is None else urls_noticed,
        removed=n,
        removed_within_24h=sum(1 for v in ordered if v <= 86_400),
        removed_within_72h=sum(1 for v in ordered if v <= 259_200),
        median_seconds=median,
        p90_seconds=p90,
        removal_sketch=kll_b64(ordered) if with_sketch and n else None,
    )


def envelope_bytes(report: Report, key: NodeKey, payload_type: str = REPORT_PAYLOAD_TYPE) -> bytes:
    return json.dumps(sign(report.to_payload(), payload_type, key).to_json()).encode()


def sign_payload(payload: bytes, key: NodeKey, payload_type: str = REPORT_PAYLOAD_TYPE) -> bytes:
    """Sign arbitrary payload bytes (for payloads a Report model would refuse to build)."""
    return json.dumps(sign(payload, payload_type, key).to_json()).encode()


def payload_dict(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(report.to_payload())
    return data


def register(engine: Engine, node_id: str, country: str, key: NodeKey, now: datetime) -> None:
    with new_session(engine) as session:
        add_node(
            session, node_id=node_id, country=country, public_key_b64=key.public_key_b64, now=now
        )


def stored_counts(engine: Engine) -> tuple[int, int, int]:
    """(reports, cells, denominators) rows."""
    with Session(engine) as session:
        return (
            session.exec(select(func.count()).select_from(ReportRow)).one(),
            session.exec(select(func.count()).select_from(CellRow)).one(),
            session.exec(select(func.count()).select_from(DenominatorRow)).one(),
        )


def make_token(
    engine: Engine,
    role: str = "admin",
    now: datetime = DAY_START,
    ttl: timedelta = timedelta(days=30),
    node_id: str | None = None,
    scopes: list[str] | None = None,
) -> str:
    """Create an API token straight in the database; returns the secret token text."""
    from coordinator.auth import Role, create_token

    with new_session(engine) as session:
        return create_token(
            session,
            name=f"test {role}",
            role=Role(role),
            now=now,
            ttl=ttl,
            actor="test",
            node_id=node_id,
            scopes=scopes,
        ).token


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
