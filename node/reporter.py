"""Build, sign and queue the node's reports.

A report covers the finished crawl cycles that started in its period [start, end) and have not
been reported yet. Each cycle is reported exactly once, because the coordinator adds up every
report it receives (several reports of one node for one period are summed, not replaced).

Cells group those cycles' sightings by (country, ASN, hoster, hash family): ``matches`` =
number of sightings, ``distinct`` = distinct final image URLs, ``sketch`` = a DataSketches HLL
(lg_k 12, HLL_8, compact) over hex(HMAC-SHA256(federation key, final URL)), so the coordinator
can count distinct URLs across nodes without learning them; ``methods`` = those same sightings
counted by how they were found (direct, dihedral, trimmed, region), so it sums to ``matches``.
Denominators come from the same cycles.

The sequence number is taken from node state, the cycles are marked reported and the signed
envelope is written to the outbox in one transaction: a crash can never leave a used sequence
without its report, two reports with one sequence, or a cycle counted twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from datasketches import hll_sketch, tgt_hll_type
from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from protocol import PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from protocol.canonical import canonical_json
from protocol.dsse import sign
from protocol.hashes import HashFamily
from protocol.keys import NodeKey
from protocol.models import (
    Denominators,
    MatchMethods,
    Period,
    Report,
    ReportCell,
    new_report_id,
    utcnow,
)

from .attribution_snapshot import sources_for_cycles
from .matcher import Method
from .models import RUNNING, CrawlCycle, HostPages, NodeState, OutboxItem, Sighting
from .notices.stats import mark_reported, removals_for_period  # issue 7

HLL_LG_K = 12
HLL_TYPE = tgt_hll_type.HLL_8


def keyed_item(federation_key: bytes, item: str) -> str:
    """What goes into a sketch: hex HMAC-SHA256 under the federation key (nodes only hold it)."""
    return hmac.new(federation_key, item.encode("utf-8"), hashlib.sha256).hexdigest()


def make_sketch(federation_key: bytes, items: Iterable[str]) -> str:
    sketch = hll_sketch(HLL_LG_K, HLL_TYPE)
    for item in items:
        sketch.update(keyed_item(federation_key, item))
    return base64.b64encode(sketch.serialize_compact()).decode("ascii")


def period_containing(moment: datetime, length: Literal["day", "hour"]) -> Period:
    """The UTC-aligned day or hour that contains ``moment``."""
    if length == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return Period(start=start, end=start + timedelta(days=1))
    start = moment.replace(minute=0, second=0, microsecond=0)
    return Period(start=start, end=start + timedelta(hours=1))


@dataclass
class _CellAcc:
    matches: int = 0
    urls: set[str] = field(default_factory=set)
    methods: dict[str, int] = field(default_factory=lambda: {m.value: 0 for m in Method})


def unreported_cycles(session: Session, period: Period) -> list[int]:
    """Finished (done or failed) cycles that started in ``period`` and were not reported."""
    started = col(CrawlCycle.started_at)
    rows = session.exec(
        select(CrawlCycle.id)
        .where(started >= period.start, started < period.end)
        .where(col(CrawlCycle.status) != RUNNING, col(CrawlCycle.report_id).is_(None))
        .order_by(col(CrawlCycle.id))
    ).all()
    return [int(i) for i in rows if i is not None]


def build_cells(session: Session, cycle_ids: list[int], federation_key: bytes) -> list[ReportCell]:
    groups: dict[tuple[str, int, str, str], _CellAcc] = {}
    if cycle_ids:
        rows = session.execute(
            sa_select(
                col(Sighting.country),
                col(Sighting.asn),
                col(Sighting.hoster),
                col(Sighting.family),
                col(Sighting.final_url),
                col(Sighting.method),
            ).where(col(Sighting.cycle_id).in_(cycle_ids))
        )
        for country, asn, hoster, family, final_url, method in rows:
            acc = groups.setdefault((country, asn, hoster, family), _CellAcc())
            acc.matches += 1
            acc.urls.add(final_url)
            # Method() refuses a value the protocol has no key for, rather than miscount.
            acc.methods[Method(method).value] += 1
    return [
        ReportCell(
            country=country,
            asn=asn,
            hoster=hoster,
            hash_family=HashFamily(family),
            matches=acc.matches,
            distinct=len(acc.urls),
            sketch=make_sketch(federation_key, sorted(acc.urls)),
            methods=MatchMethods(**acc.methods),
        )
        for (country, asn, hoster, family), acc in sorted(groups.items())
    ]


def build_denominators(session: Session, cycle_ids: list[int]) -> Denominators:
    if not cycle_ids:
        return Denominators(pages_fetched=0, images_hashed=0, hosts_seen=0)
    in_set = col(CrawlCycle.id).in_(cycle_ids)
    pages, images = session.exec(
        select(
            func.coalesce(func.sum(CrawlCycle.pages_fetched), 0),
            func.coalesce(func.sum(CrawlCycle.images_hashed), 0),
        ).where(in_set)
    ).one()
    # Distinct over the whole period: a host crawled in three cycles is one host seen.
    hosts = session.exec(
        select(func.count(func.distinct(HostPages.host))).where(
            col(HostPages.cycle_id).in_(cycle_ids), col(HostPages.pages_fetched) > 0
        )
    ).one()
    return Denominators(pages_fetched=int(pages), images_hashed=int(images), hosts_seen=int(hosts))


def pending_periods(
    engine: Engine, length: Literal["day", "hour"], until: datetime | None = None
) -> list[Period]:
    """The periods (UTC days or hours) that hold finished, unreported cycles, oldest first."""
    with Session(engine) as session:
        query = select(CrawlCycle.started_at).where(
            col(CrawlCycle.status) != RUNNING, col(CrawlCycle.report_id).is_(None)
        )
        if until is not None:
            query = query.where(col(CrawlCycle.started_at) < until)
        starts = session.exec(query).all()
    periods = {period_containing(moment, length) for moment in starts}
    return sorted(periods, key=lambda p: p.start)


@dataclass(frozen=True)
class QueuedReport:
    report: Report
    outbox_id: int
    cycle_ids: list[int]


def queue_report(
    engine: Engine,
    *,
    node_id: str,
    key: NodeKey,
    federation_key: bytes,
    period: Period,
    now: datetime | None = None,
) -> QueuedReport:
    """Build and sign the report for ``period`` and put it into the outbox (one transaction)."""
    created_at = now or utcnow()
    with Session(engine) as session, session.begin():
        # Increment first: the UPDATE takes the write lock (SQLite) or row lock (PostgreSQL)
        # before anything is read, so concurrent reporters can never share a sequence or a cycle.
        session.execute(
            update(NodeState)
            .where(col(NodeState.id) == 1)
            .values(next_sequence=col(NodeState.next_sequence) + 1)
        )
        state = session.exec(select(NodeState).where(col(NodeState.id) == 1)).one()
        sequence = state.next_sequence - 1
        cycle_ids = unreported_cycles(session, period)
        report = Report(
            protocol_version=PROTOCOL_VERSION,
            report_id=new_report_id(),
            node_id=node_id,
            key_id=key.key_id,
            sequence=sequence,
            created_at=created_at,
            period=period,
            cells=build_cells(session, cycle_ids, federation_key),
            denominators=build_denominators(session, cycle_ids),
            # issue 7: the database versions this period's sightings rest on
            attribution_sources=sources_for_cycles(session, cycle_ids),
            # issue 7: notices and removals per hoster, each fact reported once
            removals=removals_for_period(session, period),
        )
        mark_reported(session, period, report.report_id)  # issue 7
        if cycle_ids:
            session.execute(
                update(CrawlCycle)
                .where(col(CrawlCycle.id).in_(cycle_ids))
                .values(report_id=report.report_id)
            )
        envelope = sign(report.to_payload(), REPORT_PAYLOAD_TYPE, key)
        item = OutboxItem(
            report_id=report.report_id,
            sequence=sequence,
            period_start=period.start,
            period_end=period.end,
            # The wire form of docs/protocol.md §2: RFC 8785, byte-identical everywhere.
            envelope=canonical_json(envelope.to_json()).decode("utf-8"),
        )
        session.add(item)
        session.flush()
        assert item.id is not None
        outbox_id = item.id
    return QueuedReport(report=report, outbox_id=outbox_id, cycle_ids=cycle_ids)
