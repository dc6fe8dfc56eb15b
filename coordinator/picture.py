"""The global picture: stored reports aggregated by country, hoster/ASN, hash family and period.

Served from materialised rollups (coordinator.rollups); ``build_picture_raw`` computes the same
picture straight from the cells and is the reference the rollups are tested against. Distinct
counts merge the cells' HLL sketches (a union per group), so an item seen by several nodes or in
several cells counts once; cells without a sketch add their own ``distinct`` instead. Every
stored report counts, including several reports of one node for the same period: each is a
different crawl cycle's report.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from datasketches import hll_sketch, hll_union, tgt_hll_type
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, case, func
from sqlmodel import Session, col, select

from protocol.hashes import HashFamily
from protocol.models import UtcDatetime

from .models import CellRow, DenominatorRow, ReportRow

HLL_LG_K = 12
_STREAM_BATCH = 1000


@dataclass(frozen=True)
class PictureFilter:
    """period_start: reports whose period starts at or after it; period_end: reports whose
    period ends at or before it; hash_family, country, hoster (exact name), asn: only cells
    of that family / country / hoster / ASN. Report, node and denominator counts cover every
    report in the period (they belong to reports, not cells)."""

    period_start: datetime | None = None
    period_end: datetime | None = None
    hash_family: HashFamily | None = None
    country: str | None = None
    hoster: str | None = None
    asn: int | None = None


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Filters(_Out):
    period_start: UtcDatetime | None
    period_end: UtcDatetime | None
    hash_family: HashFamily | None
    country: str | None = None
    hoster: str | None = None
    asn: int | None = None


# How matches were found (docs/protocol.md §3 `methods`), and "unspecified" for the matches of
# cells whose node did not say: the five always sum to the row's matches.
METHODS = ("direct", "dihedral", "trimmed", "region", "unspecified")


class MethodCounts(_Out):
    direct: int = 0
    dihedral: int = 0
    trimmed: int = 0
    region: int = 0
    unspecified: int = 0

    @classmethod
    def of(cls, counts: Sequence[int]) -> MethodCounts:
        return cls(**dict(zip(METHODS, counts, strict=True)))


class Totals(_Out):
    matches: int
    distinct: int
    pages_fetched: int
    images_hashed: int
    hosts_seen: int
    by_method: MethodCounts = MethodCounts()  # added field: matches by how they were found


class CountryRow(_Out):
    country: str
    matches: int
    distinct: int
    nodes: int
    by_method: MethodCounts = MethodCounts()  # withheld with its row (small-cell suppression)


class HosterRow(_Out):
    hoster: str
    asn: int
    country: str
    matches: int
    distinct: int
    nodes: int
    by_method: MethodCounts = MethodCounts()


class FamilyRow(_Out):
    hash_family: HashFamily
    matches: int
    distinct: int


class PeriodRow(_Out):
    period_start: UtcDatetime
    period_end: UtcDatetime
    matches: int
    distinct: int


class NodeBreakdownRow(_Out):
    """Which node reported what: only for admins, or viewers when policy allows."""

    node_id: str
    country: str
    reports: int
    matches: int


class Suppression(_Out):
    """Small-cell suppression applied to this picture (viewer tier)."""

    min_count: int
    min_nodes: int
    by_country: int  # rows withheld
    by_hoster: int
    by_family: int
    by_period: int


class Picture(_Out):
    generated_at: UtcDatetime
    filters: Filters
    reports: int
    nodes: int
    totals: Totals
    by_country: list[CountryRow]
    by_hoster: list[HosterRow]
    by_family: list[FamilyRow]
    by_period: list[PeriodRow]
    # Added fields (the five above keep their shape): who this view was built for.
    tier: Literal["full", "viewer"] = "full"
    suppression: Suppression | None = None
    by_node: list[NodeBreakdownRow] | None = None


def node_breakdown(session: Session, filters: PictureFilter) -> list[NodeBreakdownRow]:
    from .models import NodeRow

    sqlite = session.get_bind().dialect.name == "sqlite"
    total = func.total if sqlite else func.sum
    where = _report_conditions(filters)
    cell_where = [*where, *cell_conditions(filters)]
    reports = dict(
        session.exec(
            select(col(ReportRow.node_id), func.count(col(ReportRow.report_id)))
            .where(*where)
            .group_by(col(ReportRow.node_id))
        ).all()
    )
    matches = dict(
        session.exec(
            select(col(ReportRow.node_id), total(col(CellRow.matches)))
            .select_from(CellRow)
            .join(ReportRow, col(ReportRow.report_id) == col(CellRow.report_id))
            .where(*cell_where)
            .group_by(col(ReportRow.node_id))
        ).all()
    )
    countries = dict(session.exec(select(col(NodeRow.node_id), col(NodeRow.country))).all())
    return [
        NodeBreakdownRow(
            node_id=node_id,
            country=countries.get(node_id, "??"),
            reports=int(count),
            matches=_int(matches.get(node_id)),
        )
        for node_id, count in sorted(reports.items())
    ]


def canonical_estimate(union: hll_union) -> int:
    """The union's distinct estimate, independent of the order sketches were merged in.

    In HLL mode a union's own estimate depends on how it was built (the HIP accumulator of a
    gadget promoted from coupons, or the composite estimator once merged out of order), so the
    same items merged cell by cell or via rollups could differ. Marking the result "out of
    order" makes every path use the composite estimator over the same registers; list and set
    modes estimate from their coupon count, which merging never reorders. A union below
    ``_SURELY_COUPONS`` is in one of those (HLL mode starts at 385 coupons for lg_k 12, with
    an estimate within a few percent of that), so its own estimate is taken as is.
    """
    estimate: float = union.get_estimate()
    if estimate < _SURELY_COUPONS:
        return round(estimate)
    return canonical_estimate_bytes(union.get_result(tgt_hll_type.HLL_8).serialize_compact())


def canonical_estimate_bytes(sketch: bytes) -> int:
    """``canonical_estimate`` of one serialised sketch (a union of it alone)."""
    raw = bytearray(sketch)
    if raw[_HLL_MODE_BYTE] & 0x03 == _HLL_MODE:
        raw[_HLL_FLAGS_BYTE] |= _HLL_OUT_OF_ORDER
    estimate: float = hll_sketch.deserialize(bytes(raw)).get_estimate()
    return round(estimate)


_SURELY_COUPONS = 256
# DataSketches HLL preamble: byte 5 flags, byte 7 low bits = current mode (0 list, 1 set, 2 HLL).
_HLL_FLAGS_BYTE = 5
_HLL_MODE_BYTE = 7
_HLL_MODE = 2
_HLL_OUT_OF_ORDER = 16


class DistinctCounter:
    """Per-group distinct estimate: an HLL union of sketches plus sketchless cells' counts."""

    def __init__(self) -> None:
        self._unions: dict[Hashable, hll_union] = {}
        self._plain: dict[Hashable, int] = {}

    def add_sketch(self, key: Hashable, sketch: hll_sketch) -> None:
        union = self._unions.get(key)
        if union is None:
            union = self._unions[key] = hll_union(HLL_LG_K)
        union.update(sketch)

    def add_plain(self, key: Hashable, distinct: int) -> None:
        self._plain[key] = self._plain.get(key, 0) + distinct

    def estimate(self, key: Hashable) -> int:
        union = self._unions.get(key)
        merged = canonical_estimate(union) if union is not None else 0
        return merged + self._plain.get(key, 0)


@dataclass
class Aggregates:
    """Everything a picture shows, before it is shaped: from raw cells or from rollups.

    Group values: country -> (matches, nodes, distinct); (hoster, asn, country) -> (matches,
    nodes, distinct); family -> (matches, distinct); (start, end) -> (matches, distinct).
    """

    reports: int = 0
    nodes: int = 0
    matches: int = 0
    distinct: int = 0
    pages_fetched: int = 0
    images_hashed: int = 0
    hosts_seen: int = 0
    by_country: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    by_hoster: dict[tuple[str, int, str], tuple[int, int, int]] = field(default_factory=dict)
    by_family: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_period: dict[tuple[datetime, datetime], tuple[int, int]] = field(default_factory=dict)
    # Matches per method, in METHODS order: overall, per country, per (hoster, asn, country).
    methods: list[int] = field(default_factory=lambda: [0] * len(METHODS))
    methods_by_country: dict[str, list[int]] = field(default_factory=dict)
    methods_by_hoster: dict[tuple[str, int, str], list[int]] = field(default_factory=dict)


def build_picture(
    session: Session,
    filters: PictureFilter,
    now: datetime,
    *,
    write_lock: AbstractContextManager[Any] | None = None,
) -> Picture:
    """The picture from the materialised rollups, first brought up to date with every report
    committed so far (see coordinator.rollups): exactly what ``build_picture_raw`` gives."""
    from .rollups import aggregate_rollups, refresh_rollups

    refresh_rollups(session, write_lock=write_lock)
    return assemble(aggregate_rollups(session, filters), filters, now)


def build_picture_raw(session: Session, filters: PictureFilter, now: datetime) -> Picture:
    """The picture straight from the stored cells (the reference the rollups must equal)."""
    return assemble(aggregate_raw(session, filters), filters, now)


def aggregate_raw(session: Session, filters: PictureFilter) -> Aggregates:
    report_where = _report_conditions(filters)
    cell_where = [*report_where, *cell_conditions(filters)]

    def cells_joined(*columns: Any) -> Any:
        return (
            select(*columns)
            .select_from(CellRow)
            .join(ReportRow, col(ReportRow.report_id) == col(CellRow.report_id))
            .where(*cell_where)
        )

    # SQLite's SUM() raises on 64-bit overflow; TOTAL() cannot (PostgreSQL sums into NUMERIC).
    sqlite = session.get_bind().dialect.name == "sqlite"
    total = func.total if sqlite else func.sum
    matches = total(col(CellRow.matches))
    nodes = func.count(col(ReportRow.node_id).distinct())

    reports_count, nodes_count = session.exec(
        select(func.count(col(ReportRow.report_id)), nodes).where(*report_where)
    ).one()
    denominators = session.exec(
        select(
            total(col(DenominatorRow.pages_fetched)),
            total(col(DenominatorRow.images_hashed)),
            total(col(DenominatorRow.hosts_seen)),
        )
        .join(ReportRow, col(ReportRow.report_id) == col(DenominatorRow.report_id))
        .where(*report_where)
    ).one()
    total_matches = session.exec(cells_joined(matches)).one()  # one column: a scalar
    # A cell's methods are all NULL or all set: its matches are "unspecified" when NULL.
    said = col(CellRow.m_direct).is_not(None)
    method_sums = (
        total(col(CellRow.m_direct)),
        total(col(CellRow.m_dihedral)),
        total(col(CellRow.m_trimmed)),
        total(col(CellRow.m_region)),
        total(case((said, 0), else_=col(CellRow.matches))),
    )
    total_methods = session.exec(cells_joined(*method_sums)).one()

    country_key = (col(CellRow.country),)
    hoster_key = (col(CellRow.hoster), col(CellRow.asn), col(CellRow.country))
    family_key = (col(CellRow.hash_family),)
    period_key = (col(ReportRow.period_start), col(ReportRow.period_end))

    by_country = _grouped(session, cells_joined, country_key, (matches, nodes))
    by_hoster = _grouped(session, cells_joined, hoster_key, (matches, nodes))
    by_family = _grouped(session, cells_joined, family_key, (matches,))
    methods_by_country = _grouped(session, cells_joined, country_key, method_sums)
    methods_by_hoster = _grouped(session, cells_joined, hoster_key, method_sums)
    by_period = _grouped(session, cells_joined, period_key, (matches,))

    distinct = DistinctCounter()
    stream = cells_joined(
        *country_key,
        *hoster_key[:2],
        *family_key,
        *period_key,
        col(CellRow.sketch),
        col(CellRow.distinct),
    ).execution_options(yield_per=_STREAM_BATCH)
    for country, hoster, asn, family, p_start, p_end, sketch_b64, plain in session.exec(stream):
        keys: tuple[Hashable, ...] = (
            ("total",),
            ("country", country),
            ("hoster", hoster, asn, country),
            ("family", family),
            ("period", p_start, p_end),
        )
        if sketch_b64 is None:
            for key in keys:
                distinct.add_plain(key, int(plain))
            continue
        # Ingest already checked every sketch decodes.
        sketch = hll_sketch.deserialize(base64.b64decode(sketch_b64))
        for key in keys:
            distinct.add_sketch(key, sketch)

    return Aggregates(
        reports=int(reports_count),
        nodes=int(nodes_count),
        matches=_int(total_matches),
        distinct=distinct.estimate(("total",)),
        pages_fetched=_int(denominators[0]),
        images_hashed=_int(denominators[1]),
        hosts_seen=_int(denominators[2]),
        by_country={
            country: (_int(m), int(n), distinct.estimate(("country", country)))
            for (country,), (m, n) in by_country.items()
        },
        by_hoster={
            (hoster, int(asn), country): (
                _int(m),
                int(n),
                distinct.estimate(("hoster", hoster, asn, country)),
            )
            for (hoster, asn, country), (m, n) in by_hoster.items()
        },
        by_family={
            family: (_int(m), distinct.estimate(("family", family)))
            for (family,), (m,) in by_family.items()
        },
        by_period={
            (p_start, p_end): (_int(m), distinct.estimate(("period", p_start, p_end)))
            for (p_start, p_end), (m,) in by_period.items()
        },
        methods=[_int(v) for v in total_methods],
        methods_by_country={
            country: [_int(v) for v in sums] for (country,), sums in methods_by_country.items()
        },
        methods_by_hoster={
            (hoster, int(asn), country): [_int(v) for v in sums]
            for (hoster, asn, country), sums in methods_by_hoster.items()
        },
    )


def assemble(agg: Aggregates, filters: PictureFilter, now: datetime) -> Picture:
    return Picture(
        generated_at=now,
        filters=Filters(
            period_start=filters.period_start,
            period_end=filters.period_end,
            hash_family=filters.hash_family,
            country=filters.country,
            hoster=filters.hoster,
            asn=filters.asn,
        ),
        reports=agg.reports,
        nodes=agg.nodes,
        totals=Totals(
            matches=agg.matches,
            distinct=agg.distinct,
            pages_fetched=agg.pages_fetched,
            images_hashed=agg.images_hashed,
            hosts_seen=agg.hosts_seen,
            by_method=MethodCounts.of(agg.methods),
        ),
        by_country=sorted(
            (
                CountryRow(
                    country=country,
                    matches=m,
                    distinct=d,
                    nodes=n,
                    by_method=MethodCounts.of(agg.methods_by_country.get(country, _NONE)),
                )
                for country, (m, n, d) in agg.by_country.items()
            ),
            key=lambda r: (-r.matches, r.country),
        ),
        by_hoster=sorted(
            (
                HosterRow(
                    hoster=hoster,
                    asn=asn,
                    country=country,
                    matches=m,
                    distinct=d,
                    nodes=n,
                    by_method=MethodCounts.of(
                        agg.methods_by_hoster.get((hoster, asn, country), _NONE)
                    ),
                )
                for (hoster, asn, country), (m, n, d) in agg.by_hoster.items()
            ),
            key=lambda r: (-r.matches, r.hoster, r.asn, r.country),
        ),
        by_family=sorted(
            (
                FamilyRow(hash_family=HashFamily(family), matches=m, distinct=d)
                for family, (m, d) in agg.by_family.items()
            ),
            key=lambda r: (-r.matches, r.hash_family.value),
        ),
        by_period=sorted(
            (
                PeriodRow(period_start=p_start, period_end=p_end, matches=m, distinct=d)
                for (p_start, p_end), (m, d) in agg.by_period.items()
            ),
            key=lambda r: (r.period_start, r.period_end),
        ),
    )


_NONE = (0,) * len(METHODS)


def _report_conditions(filters: PictureFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.period_start is not None:
        where.append(col(ReportRow.period_start) >= filters.period_start)
    if filters.period_end is not None:
        where.append(col(ReportRow.period_end) <= filters.period_end)
    return where


def cell_conditions(filters: PictureFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if filters.hash_family is not None:
        where.append(col(CellRow.hash_family) == filters.hash_family.value)
    if filters.country is not None:
        where.append(col(CellRow.country) == filters.country)
    if filters.hoster is not None:
        where.append(col(CellRow.hoster) == filters.hoster)
    if filters.asn is not None:
        where.append(col(CellRow.asn) == filters.asn)
    return where


def _grouped(
    session: Session,
    cells_joined: Any,
    key: Sequence[Any],
    aggregates: Sequence[Any],
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """One GROUP BY query: {group key tuple: aggregate tuple}."""
    rows = session.exec(cells_joined(*key, *aggregates).group_by(*key)).all()
    width = len(key)
    return {tuple(row[:width]): tuple(row[width:]) for row in rows}


def _int(value: Any) -> int:
    # SUM() is NULL over no rows and NUMERIC (Decimal) on PostgreSQL; TOTAL() is a float.
    return int(value) if value is not None else 0
