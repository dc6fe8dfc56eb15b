"""The global picture: stored reports aggregated by country, hoster/ASN, hash family and period.

Served from materialised rollups (coordinator.rollups); ``build_picture_raw`` computes the same
picture straight from the cells and is the reference the rollups are tested against. Distinct
counts merge the cells' sketches (a union per group, coordinator.distinct): Theta when every
cell of the group has ``url_theta`` (exact below 2^15, else within 2 %), else HLL, so an item
seen by several nodes or in several cells counts once; cells without any sketch add their own
``distinct`` instead. Every stored report counts, including several reports of one node for the
same period: each is a different crawl cycle's report. Country and hoster rows also carry the
crawl effort behind them and the prevalence, over the reports that carried ``coverage``.
"""

from __future__ import annotations

import base64
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr
from sqlalchemy import ColumnElement, case, func
from sqlmodel import Session, col, select

from protocol.hashes import Media, ReportFamily, media_of
from protocol.models import UtcDatetime

from .aggregates import METHODS, Aggregates, CoverageSums, PictureFilter
from .distinct import (
    EMPTY,
    HLL_LG_K,
    DistinctCount,
    DistinctCounter,
    canonical_estimate,
    canonical_estimate_bytes,
)
from .models import CellRow, CoverageRow, DenominatorRow, ReportRow
from .prevalence import Prevalence, prevalence
from .rollups import aggregate_rollups, refresh_rollups

__all__ = [
    "HLL_LG_K",
    "METHODS",
    "Aggregates",
    "CoverageSums",
    "DistinctCount",
    "DistinctCounter",
    "PictureFilter",
    "canonical_estimate",
    "canonical_estimate_bytes",
]
_STREAM_BATCH = 1000


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Filters(_Out):
    period_start: UtcDatetime | None
    period_end: UtcDatetime | None
    hash_family: ReportFamily | None
    country: str | None = None
    hoster: str | None = None
    asn: int | None = None
    media: Media | None = None  # added field (issue 13): image or video families only


# How matches were found (docs/protocol.md §3 `methods`), and "unspecified" for the matches of
# cells whose node did not say: the five always sum to the row's matches.


class MethodCounts(_Out):
    direct: int = 0
    dihedral: int = 0
    trimmed: int = 0
    region: int = 0
    unspecified: int = 0

    @classmethod
    def of(cls, counts: Sequence[int]) -> MethodCounts:
        return cls(**dict(zip(METHODS, counts, strict=True)))


class _DistinctBounds(_Out):
    """Issue 16: ``distinct`` is exact (``distinct_exact``) while the merged Theta sketch holds
    at most 2^15 members, else an estimate between ``distinct_lower`` and ``distinct_upper``
    (3 sigma; within 2 % from Theta, about 5 % from HLL, which groups with a cell from a node
    that sent no url_theta fall back to)."""

    distinct_exact: bool = False
    distinct_lower: int = 0
    distinct_upper: int = 0


class _Covered(_DistinctBounds):
    """Issue 16: crawl effort behind a country or hoster row, over the reports that carried
    coverage (null when none did); ``prevalence`` = the row's matches in those reports per
    10,000 images hashed there."""

    pages_fetched: int | None = None
    images_hashed: int | None = None
    prevalence: Prevalence | None = None
    # For viewer-tier suppression only (never serialised): prevalence's numerator and the
    # nodes whose coverage it rests on.
    _coverage_matches: int = PrivateAttr(default=0)
    _coverage_nodes: int = PrivateAttr(default=0)


class MediaCounts(_Out):
    """Matches of image families and of video families (issue 13; vpdq-frame is an image:
    a still found on the web). The two always sum to the totals' matches."""

    image: int = 0
    video: int = 0


class Totals(_DistinctBounds):
    matches: int
    distinct: int
    pages_fetched: int
    images_hashed: int
    hosts_seen: int
    by_method: MethodCounts = MethodCounts()  # added field: matches by how they were found
    by_media: MediaCounts = MediaCounts()  # added field (issue 13): image vs video matches
    # Issue 16: matches per 10k images over the reports that carried coverage (their effort:
    # GET /v1/coverage); pages_fetched/images_hashed above stay every report's denominators.
    prevalence: Prevalence | None = None


class CountryRow(_Covered):
    country: str
    matches: int
    distinct: int
    nodes: int
    by_method: MethodCounts = MethodCounts()  # withheld with its row (small-cell suppression)


class HosterRow(_Covered):
    hoster: str
    asn: int
    country: str
    matches: int
    distinct: int
    nodes: int
    by_method: MethodCounts = MethodCounts()


class FamilyRow(_DistinctBounds):
    hash_family: ReportFamily
    matches: int
    distinct: int
    media: Media = "image"  # added field (issue 13): what was found, from the family


class PeriodRow(_DistinctBounds):
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


def build_picture(
    session: Session,
    filters: PictureFilter,
    now: datetime,
    *,
    write_lock: AbstractContextManager[Any] | None = None,
) -> Picture:
    """The picture from the materialised rollups, first brought up to date with every report
    committed so far (see coordinator.rollups): exactly what ``build_picture_raw`` gives."""
    if filters.media is not None:
        # The rollups keep one row set per family or over all families, not per media: a
        # media filter reads the cells (the same numbers, as build_picture_raw is the
        # reference the rollups are tested against), slower over long windows.
        return build_picture_raw(session, filters, now)
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
        col(CellRow.url_theta),
    ).execution_options(yield_per=_STREAM_BATCH)
    keys_seen: dict[Hashable, None] = {("total",): None}
    for country, hoster, asn, family, p_start, p_end, sketch_b64, plain, theta_b64 in session.exec(
        stream
    ):
        keys: tuple[Hashable, ...] = (
            ("total",),
            ("country", country),
            ("hoster", hoster, int(asn), country),
            ("family", family),
            ("period", p_start, p_end),
        )
        # Ingest already checked every sketch decodes.
        hll = None if sketch_b64 is None else base64.b64decode(sketch_b64)
        theta = None if theta_b64 is None else base64.b64decode(theta_b64)
        for key in keys:
            keys_seen[key] = None
            distinct.add(
                key,
                cells=1,
                hll=hll,
                plain=int(plain) if hll is None else 0,
                theta_cells=0 if theta is None else 1,
                theta=theta,
            )
    counts = {key: distinct.result(key) for key in keys_seen}

    def estimate(key: Hashable) -> int:
        return counts.get(key, EMPTY).estimate

    return Aggregates(
        reports=int(reports_count),
        nodes=int(nodes_count),
        matches=_int(total_matches),
        distinct=estimate(("total",)),
        pages_fetched=_int(denominators[0]),
        images_hashed=_int(denominators[1]),
        hosts_seen=_int(denominators[2]),
        by_country={
            country: (_int(m), int(n), estimate(("country", country)))
            for (country,), (m, n) in by_country.items()
        },
        by_hoster={
            (hoster, int(asn), country): (
                _int(m),
                int(n),
                estimate(("hoster", hoster, int(asn), country)),
            )
            for (hoster, asn, country), (m, n) in by_hoster.items()
        },
        by_family={
            family: (_int(m), estimate(("family", family))) for (family,), (m,) in by_family.items()
        },
        by_period={
            (p_start, p_end): (_int(m), estimate(("period", p_start, p_end)))
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
        distinct_counts=counts,
        coverage=_coverage_raw(session, filters, cells_joined, total),
    )


def _coverage_raw(
    session: Session, filters: PictureFilter, cells_joined: Any, total: Any
) -> dict[tuple[Any, ...], CoverageSums]:
    """Coverage of the total (the filtered place), each country and each hoster, straight
    from the coverage rows; matches from the cells of reports that carried coverage."""
    where = [*_report_conditions(filters), *coverage_conditions(filters)]

    def coverage_joined(*columns: Any) -> Any:
        return (
            select(*columns)
            .select_from(CoverageRow)
            .join(ReportRow, col(ReportRow.report_id) == col(CoverageRow.report_id))
            .where(*where)
        )

    pages, images = total(col(CoverageRow.pages_fetched)), total(col(CoverageRow.images_hashed))
    nodes = func.count(col(ReportRow.node_id).distinct())
    reports = func.count(col(CoverageRow.report_id).distinct())
    # A filter on hoster or ASN totals hoster groups, each counting its reports (as the
    # rollups' hoster rows do); otherwise the place's reports count once.
    by_hoster = filters.hoster is not None or filters.asn is not None
    total_reports = func.count(col(CoverageRow.id)) if by_hoster else reports
    country_key = (col(CoverageRow.country),)
    hoster_key = (col(CoverageRow.hoster), col(CoverageRow.asn), col(CoverageRow.country))
    covered = col(CellRow.report_id).in_(select(col(CoverageRow.report_id)))
    cell_matches = total(col(CellRow.matches))

    def covered_matches(key: Sequence[Any]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        rows = session.exec(cells_joined(*key, cell_matches).where(covered).group_by(*key))
        return {tuple(row[:-1]): (row[-1],) for row in rows}

    out: dict[tuple[Any, ...], CoverageSums] = {}
    t_pages, t_images, t_nodes, t_reports = session.exec(
        coverage_joined(pages, images, nodes, total_reports)
    ).one()
    if int(t_reports):
        t_matches = session.exec(cells_joined(cell_matches).where(covered)).one()
        out[("total",)] = CoverageSums(
            _int(t_pages), _int(t_images), _int(t_matches), int(t_nodes), int(t_reports)
        )
    cell_country = (col(CellRow.country),)
    cell_hoster = (col(CellRow.hoster), col(CellRow.asn), col(CellRow.country))
    for prefix, key, cell_key in (
        ("country", country_key, cell_country),
        ("hoster", hoster_key, cell_hoster),
    ):
        matches = covered_matches(cell_key)
        group_reports = total_reports if prefix == "country" else reports
        for group, (g_pages, g_images, g_nodes, g_reports) in _grouped(
            session, coverage_joined, key, (pages, images, nodes, group_reports)
        ).items():
            group = tuple(
                int(v) if prefix == "hoster" and i == 1 else v for i, v in enumerate(group)
            )
            out[(prefix, *group)] = CoverageSums(
                _int(g_pages),
                _int(g_images),
                _int(matches.get(group, (0,))[0]),
                int(g_nodes),
                int(g_reports),
            )
    return out


def assemble(agg: Aggregates, filters: PictureFilter, now: datetime) -> Picture:
    counts, coverage = agg.distinct_counts, agg.coverage

    def bounds(key: Hashable) -> dict[str, Any]:
        count = counts.get(key)
        if count is None:
            return {}
        return {
            "distinct_exact": count.exact,
            "distinct_lower": count.lower,
            "distinct_upper": count.upper,
        }

    def country_row(country: str, m: int, n: int, d: int) -> CountryRow:
        key = ("country", country)
        row = CountryRow(
            country=country,
            matches=m,
            distinct=d,
            nodes=n,
            by_method=MethodCounts.of(agg.methods_by_country.get(country, _NONE)),
            **bounds(key),
            **_covered_fields(coverage.get(key)),
        )
        return _mark(row, coverage.get(key))

    def hoster_row(hoster: str, asn: int, country: str, m: int, n: int, d: int) -> HosterRow:
        key = ("hoster", hoster, asn, country)
        row = HosterRow(
            hoster=hoster,
            asn=asn,
            country=country,
            matches=m,
            distinct=d,
            nodes=n,
            by_method=MethodCounts.of(agg.methods_by_hoster.get((hoster, asn, country), _NONE)),
            **bounds(key),
            **_covered_fields(coverage.get(key)),
        )
        return _mark(row, coverage.get(key))

    total_coverage = coverage.get(("total",))
    return Picture(
        generated_at=now,
        filters=Filters(
            period_start=filters.period_start,
            period_end=filters.period_end,
            hash_family=filters.hash_family,
            country=filters.country,
            hoster=filters.hoster,
            asn=filters.asn,
            media=filters.media,
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
            by_media=_media_counts(agg),
            prevalence=None
            if total_coverage is None
            else prevalence(total_coverage.matches, total_coverage.images_hashed),
            **bounds(("total",)),
        ),
        by_country=sorted(
            (country_row(country, m, n, d) for country, (m, n, d) in agg.by_country.items()),
            key=lambda r: (-r.matches, r.country),
        ),
        by_hoster=sorted(
            (
                hoster_row(hoster, asn, country, m, n, d)
                for (hoster, asn, country), (m, n, d) in agg.by_hoster.items()
            ),
            key=lambda r: (-r.matches, r.hoster, r.asn, r.country),
        ),
        by_family=sorted(
            (
                FamilyRow(
                    hash_family=ReportFamily(family),
                    matches=m,
                    distinct=d,
                    media=media_of(ReportFamily(family)),
                    **bounds(("family", family)),
                )
                for family, (m, d) in agg.by_family.items()
            ),
            key=lambda r: (-r.matches, r.hash_family.value),
        ),
        by_period=sorted(
            (
                PeriodRow(
                    period_start=p_start,
                    period_end=p_end,
                    matches=m,
                    distinct=d,
                    **bounds(("period", p_start, p_end)),
                )
                for (p_start, p_end), (m, d) in agg.by_period.items()
            ),
            key=lambda r: (r.period_start, r.period_end),
        ),
    )


def _media_counts(agg: Aggregates) -> MediaCounts:
    """Split the matches by media from the per-family sums (exact: every cell has one family)."""
    split = {"image": 0, "video": 0}
    for family, (m, _) in agg.by_family.items():
        split[media_of(ReportFamily(family))] += m
    return MediaCounts(**split)


def _covered_fields(sums: CoverageSums | None) -> dict[str, Any]:
    if sums is None:
        return {}
    return {
        "pages_fetched": sums.pages_fetched,
        "images_hashed": sums.images_hashed,
        "prevalence": prevalence(sums.matches, sums.images_hashed),
    }


_Row = TypeVar("_Row", bound=_Covered)


def _mark(row: _Row, sums: CoverageSums | None) -> _Row:
    """Keep what viewer-tier suppression needs of the coverage, off the wire."""
    if sums is not None:
        row._coverage_matches = sums.matches
        row._coverage_nodes = sums.nodes
    return row


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
    if filters.media is not None:
        where.append(col(CellRow.hash_family).in_(families_of_media(filters.media)))
    if filters.country is not None:
        where.append(col(CellRow.country) == filters.country)
    if filters.hoster is not None:
        where.append(col(CellRow.hoster) == filters.hoster)
    if filters.asn is not None:
        where.append(col(CellRow.asn) == filters.asn)
    return where


def families_of_media(media: Media) -> list[str]:
    """The wire names of the report families whose finds are of ``media``."""
    return [family.value for family in ReportFamily if media_of(family) == media]


def coverage_conditions(filters: PictureFilter) -> list[ColumnElement[bool]]:
    """The place filters on coverage rows (coverage has no hash family)."""
    where: list[ColumnElement[bool]] = []
    if filters.country is not None:
        where.append(col(CoverageRow.country) == filters.country)
    if filters.hoster is not None:
        where.append(col(CoverageRow.hoster) == filters.hoster)
    if filters.asn is not None:
        where.append(col(CoverageRow.asn) == filters.asn)
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
