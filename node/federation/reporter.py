"""Build, sign and queue the node's reports.

A report covers the finished crawl cycles that started in its period [start, end) and have not
been reported yet. Each cycle is reported exactly once, because the coordinator adds up every
report it receives (several reports of one node for one period are summed, not replaced).

Cells group those cycles' sightings by (country, ASN, hoster, hash family): ``matches`` = number of
sightings, ``distinct`` = distinct final image URLs, ``sketch`` = a DataSketches HLL (lg_k 12,
HLL_8, compact) over hex(HMAC-SHA256(federation key, final URL)), so the coordinator can count
distinct URLs across nodes without learning them; ``methods`` = those same sightings counted by how
they were found (direct, dihedral, trimmed, region), so it sums to ``matches``. Issue 16:
``url_theta`` = a Theta sketch (protocol.theta: lg_k 15, exact below 32,768 members) of the same
keyed URLs, ``items`` / ``item_theta`` = the distinct matched list items and the Theta sketch of
their keyed identities (node/federation/report_items.py), so the coordinator can follow an item from
hoster to hoster without learning it. Denominators come from the same cycles, and ``coverage``
splits them per hoster (node/federation/report_coverage.py). Issue 14: sightings the flood guard
holds or discarded stay out of the cells, and ``discovery`` counts the candidates found and the
verdicts given per hoster (node/federation/report_discovery.py).

Periods are UTC-aligned: 5 or 15 minutes, an hour or a day (``report.period``).

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
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from datasketches import hll_sketch, tgt_hll_type
from sqlalchemy import func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from node.attribution.snapshot import sources_for_cycles
from node.federation.report_coverage import build_coverage  # issue 16
from node.federation.report_discovery import build_discovery, unreported_held  # issue 14
from node.federation.report_items import item_identities  # issue 16
from node.matching.matcher import Method
from node.models import RUNNING, CrawlCycle, HostPages, NodeState, OutboxItem, Sighting
from node.notices.stats import mark_reported, removals_for_period  # issue 7
from protocol import PROTOCOL_VERSION, REPORT_PAYLOAD_TYPE
from protocol.canonical import canonical_json
from protocol.dsse import sign
from protocol.hashes import HashFamily, ReportFamily, report_family_of
from protocol.keys import NodeKey
from protocol.models import (
    Denominators,
    HosterCoverage,
    MatchMethods,
    Period,
    Report,
    ReportCell,
    new_report_id,
    utcnow,
)
from protocol.theta import make_theta

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


# Report period lengths (``report.period``); short ones give a near-real-time picture.
PeriodLength = Literal["5m", "15m", "hour", "day"]
PERIOD_LENGTHS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
assert set(PERIOD_LENGTHS) == set(get_args(PeriodLength))


def period_containing(moment: datetime, length: PeriodLength) -> Period:
    """The UTC-aligned period of ``length`` that contains ``moment`` (periods tile each UTC
    day from midnight, so every node cuts the same periods)."""
    span = PERIOD_LENGTHS[length]
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight + ((moment - midnight) // span) * span
    return Period(start=start, end=start + span)


@dataclass
class _CellAcc:
    matches: int = 0
    urls: set[str] = field(default_factory=set)
    methods: dict[str, int] = field(default_factory=lambda: {m.value: 0 for m in Method})
    entries: set[int] = field(default_factory=set)  # matched list entries (-> items)


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


def _report_family(family: str) -> ReportFamily:
    """The report family of a sighting's stored family (issue 13).

    A fetched image matched against a listed image is stored under its hash family's name,
    which report_family_of keeps. The cycle stores video matches (and stills of listed videos)
    under their report-only family (video-md5/-sha1/-sha256, vpdq, vpdq-frame: node/cycle.py),
    which passes through as is; anything else is refused by the enum rather than miscounted.
    """
    if family in HashFamily.__members__.values():
        return report_family_of(HashFamily(family), "image")
    return ReportFamily(family)


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
                col(Sighting.entry_id),
            ).where(
                col(Sighting.cycle_id).in_(cycle_ids),
                unreported_held(),  # issue 14: the flood guard's held and discarded matches
            )
        )
        for country, asn, hoster, family, final_url, method, entry_id in rows:
            acc = groups.setdefault((country, asn, hoster, family), _CellAcc())
            acc.matches += 1
            acc.urls.add(final_url)
            # Method() refuses a value the protocol has no key for, rather than miscount.
            acc.methods[Method(method).value] += 1
            acc.entries.add(entry_id)
    identity = item_identities(session, (e for acc in groups.values() for e in acc.entries))
    cells = []
    for (country, asn, hoster, family), acc in sorted(groups.items()):
        urls = sorted(acc.urls)
        items = sorted({identity[e] for e in acc.entries})
        cells.append(
            ReportCell(
                country=country,
                asn=asn,
                hoster=hoster,
                hash_family=_report_family(family),
                matches=acc.matches,
                distinct=len(urls),
                sketch=make_sketch(federation_key, urls),
                methods=MatchMethods(**acc.methods),
                url_theta=make_theta(federation_key, urls),
                items=len(items),
                item_theta=make_theta(federation_key, items),
            )
        )
    return cells


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
    engine: Engine, length: PeriodLength, until: datetime | None = None
) -> list[Period]:
    """The periods (UTC-aligned, of ``length``) that hold finished, unreported cycles (only
    cycles started before ``until``, when given), oldest first."""
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
        cells = build_cells(session, cycle_ids, federation_key)
        denominators = build_denominators(session, cycle_ids)
        coverage: list[HosterCoverage] = build_coverage(session, cycle_ids, cells, denominators)
        report = Report(
            protocol_version=PROTOCOL_VERSION,
            report_id=new_report_id(),
            node_id=node_id,
            key_id=key.key_id,
            sequence=sequence,
            created_at=created_at,
            period=period,
            cells=cells,
            denominators=denominators,
            # issue 7: the database versions this period's sightings rest on
            attribution_sources=sources_for_cycles(session, cycle_ids),
            # issue 7: notices and removals per hoster, each fact reported once
            removals=removals_for_period(session, period),
            coverage=coverage,  # issue 16: the denominators per hoster
            # issue 14: candidates found and verdicts given per hoster (counts only)
            discovery=build_discovery(session, cycle_ids),
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
