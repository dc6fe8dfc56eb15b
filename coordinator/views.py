"""Derived views of the picture: viewer-tier suppression, the waterbed (period shifts), CSV.

Suppression withholds whole rows whose match count is below ``min_count`` or that fewer than
``min_nodes`` nodes contributed to, so a viewer cannot single out one node's findings or a
near-unique item. Totals stay exact: they are already aggregated over every node.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import func
from sqlmodel import Session, col, select

from protocol.hashes import Media, ReportFamily
from protocol.models import UtcDatetime

from .errors import InvalidRequest
from .models import CellRow, CoverageRow, ReportRow
from .picture import (
    CountryRow,
    HosterRow,
    Picture,
    PictureFilter,
    Suppression,
    aggregate_raw,
    families_of_media,
)
from .prevalence import Prevalence, prevalence


@dataclass(frozen=True)
class SuppressionPolicy:
    min_count: int = 0
    min_nodes: int = 1

    @property
    def active(self) -> bool:
        return self.min_count > 0 or self.min_nodes > 1

    def hides(self, matches: int, nodes: int | None) -> bool:
        return matches < self.min_count or (nodes is not None and nodes < self.min_nodes)


def for_viewer(picture: Picture, policy: SuppressionPolicy) -> Picture:
    """The viewer tier: small cells withheld and no per-node breakdown."""
    countries = [
        _coverage_shown(r, policy)
        for r in picture.by_country
        if not policy.hides(r.matches, r.nodes)
    ]
    hosters = [
        _coverage_shown(r, policy)
        for r in picture.by_hoster
        if not policy.hides(r.matches, r.nodes)
    ]
    families = [r for r in picture.by_family if not policy.hides(r.matches, None)]
    periods = [r for r in picture.by_period if not policy.hides(r.matches, None)]
    return picture.model_copy(
        update={
            "tier": "viewer",
            "by_country": countries,
            "by_hoster": hosters,
            "by_family": families,
            "by_period": periods,
            "by_node": None,
            "suppression": Suppression(
                min_count=policy.min_count,
                min_nodes=policy.min_nodes,
                by_country=len(picture.by_country) - len(countries),
                by_hoster=len(picture.by_hoster) - len(hosters),
                by_family=len(picture.by_family) - len(families),
                by_period=len(picture.by_period) - len(periods),
            ),
        }
    )


_Row = TypeVar("_Row", CountryRow, HosterRow)


def _coverage_shown(row: _Row, policy: SuppressionPolicy) -> _Row:
    """Issue 16: a shown row's coverage figures are withheld when fewer than min_nodes nodes
    reported them (one node's crawl effort), and its prevalence when that rests on a small
    non-zero count (images times prevalence would give the count back)."""
    if row.images_hashed is None:
        return row
    if row._coverage_nodes < policy.min_nodes:
        return row.model_copy(
            update={"pages_fetched": None, "images_hashed": None, "prevalence": None}
        )
    if 0 < row._coverage_matches < policy.min_count:
        return row.model_copy(update={"prevalence": None})
    return row


# --- waterbed view --------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# "withheld": one period's value is suppressed, so the direction would leak its size.
Direction = Literal["rose", "fell", "unchanged", "appeared", "vanished", "withheld"]


class ShiftRow(_Out):
    """One hoster (or country) in two periods. ``None`` = withheld by small-cell suppression.

    Normalised for crawl effort (issue 16): ``images_before``/``images_after`` are the images
    the nodes hashed there (null: no report in that period carried coverage) and
    ``prevalence_*`` the matches per 10,000 of them, counted over the reports that carried
    coverage; ``prevalence_change`` = after - before (per 10k), when both are known."""

    country: str
    hoster: str | None = None
    asn: int | None = None
    matches_before: int | None
    matches_after: int | None
    delta: int | None
    direction: Direction
    images_before: int | None = None
    images_after: int | None = None
    prevalence_before: Prevalence | None = None
    prevalence_after: Prevalence | None = None
    prevalence_change: float | None = None

    # Flat copies for the CSV (a spreadsheet has no nested objects).
    @computed_field  # type: ignore[prop-decorator]
    @property
    def per_10k_before(self) -> float | None:
        return self.prevalence_before.per_10k if self.prevalence_before else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def per_10k_after(self) -> float | None:
        return self.prevalence_after.per_10k if self.prevalence_after else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def per_10k_change(self) -> float | None:
        return self.prevalence_change


class Shifts(_Out):
    generated_at: UtcDatetime
    before_start: UtcDatetime
    before_end: UtcDatetime
    after_start: UtcDatetime
    after_end: UtcDatetime
    hash_family: ReportFamily | None
    tier: Literal["full", "viewer"]
    by_country: list[ShiftRow]
    by_hoster: list[ShiftRow]
    suppressed_rows: int
    # The length of each window (both are equal: unequal windows are refused).
    period_seconds: int | None = None
    media: Media | None = None  # added field (issue 13): image or video families only


def _direction(before: int, after: int) -> Direction:
    if before == 0 and after > 0:
        return "appeared"
    if after == 0 and before > 0:
        return "vanished"
    if after > before:
        return "rose"
    return "fell" if after < before else "unchanged"


def _counts(
    session: Session, filters: PictureFilter, by: Literal["country", "hoster"]
) -> dict[tuple[Any, ...], tuple[int, int]]:
    """{group: (matches, contributing nodes)} from the rollups: per country, or per
    (country, hoster, asn)."""
    from .rollups import aggregate_rollups

    # The rollups hold no per-media rows: a media filter counts from the cells (same numbers).
    agg = (
        aggregate_rollups(session, filters)
        if filters.media is None
        else aggregate_raw(session, filters)
    )
    if by == "country":
        return {(country,): (m, n) for country, (m, n, _) in agg.by_country.items()}
    return {
        (country, hoster, asn): (m, n)
        for (hoster, asn, country), (m, n, _) in agg.by_hoster.items()
    }


# {group: (images hashed, matches in the reports that carried coverage)}
Effort = dict[tuple[Any, ...], tuple[int, int]]


def _effort(session: Session, filters: PictureFilter, by: Literal["country", "hoster"]) -> Effort:
    """Crawl effort per country or (country, hoster, asn) from the reports' coverage rows,
    and the matches of the cells in those same reports (a report without coverage adds to
    neither: its effort is unknown)."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    total = func.total if sqlite else func.sum
    when = []
    if filters.period_start is not None:
        when.append(col(ReportRow.period_start) >= filters.period_start)
    if filters.period_end is not None:
        when.append(col(ReportRow.period_end) <= filters.period_end)
    if by == "country":
        cov_key: tuple[Any, ...] = (col(CoverageRow.country),)
        cell_key: tuple[Any, ...] = (col(CellRow.country),)
    else:
        cov_key = (col(CoverageRow.country), col(CoverageRow.hoster), col(CoverageRow.asn))
        cell_key = (col(CellRow.country), col(CellRow.hoster), col(CellRow.asn))
    images: dict[tuple[Any, ...], int] = {}
    for *group, value in session.exec(
        select(*_columns(*cov_key, total(col(CoverageRow.images_hashed))))
        .join(ReportRow, col(ReportRow.report_id) == col(CoverageRow.report_id))
        .where(*when)
        .group_by(*cov_key)
    ):
        images[_group(group)] = int(value or 0)
    covered = select(col(CoverageRow.report_id)).distinct()
    cell_when = [*when, col(CellRow.report_id).in_(covered)]
    if filters.hash_family is not None:
        cell_when.append(col(CellRow.hash_family) == filters.hash_family.value)
    if filters.media is not None:
        cell_when.append(col(CellRow.hash_family).in_(families_of_media(filters.media)))
    matches: dict[tuple[Any, ...], int] = {}
    for *group, value in session.exec(
        select(*_columns(*cell_key, total(col(CellRow.matches))))
        .join(ReportRow, col(ReportRow.report_id) == col(CellRow.report_id))
        .where(*cell_when)
        .group_by(*cell_key)
    ):
        matches[_group(group)] = int(value or 0)
    return {g: (n, matches.get(g, 0)) for g, n in images.items()}


def _columns(*columns: Any) -> tuple[Any, ...]:
    return columns


def _group(values: Sequence[Any]) -> tuple[Any, ...]:
    # (country, hoster, asn) with the ASN as int, as _counts keys it.
    return tuple(int(v) if i == 2 else v for i, v in enumerate(values))


def build_shifts(
    session: Session,
    before: tuple[datetime, datetime],
    after: tuple[datetime, datetime],
    hash_family: ReportFamily | None,
    now: datetime,
    policy: SuppressionPolicy | None = None,
    *,
    write_lock: AbstractContextManager[Any] | None = None,
    media: Media | None = None,
) -> Shifts:
    """Where counts fell and where they rose between two periods, per hoster and country,
    with the prevalence (matches per 10k images hashed) in each period beside the counts.

    The two periods must be equally long (a week against a day says nothing about a shift):
    anything else is refused with invalid_request. ``policy`` (viewer tier) withholds each
    period's value that fails the thresholds (its prevalence with it); a row with both values
    withheld is dropped and counted in ``suppressed_rows``.
    """
    from .rollups import refresh_rollups

    length_before, length_after = before[1] - before[0], after[1] - after[0]
    if length_before != length_after:
        raise InvalidRequest(
            f"the two periods differ in length ({_span_text(length_before)} before, "
            f"{_span_text(length_after)} after): compare periods of equal length"
        )

    refresh_rollups(session, write_lock=write_lock)
    f_before = PictureFilter(before[0], before[1], hash_family, media=media)
    f_after = PictureFilter(after[0], after[1], hash_family, media=media)
    suppressed = 0

    def rows(key: Literal["country", "hoster"], make: Any) -> list[ShiftRow]:
        nonlocal suppressed
        a, b = _counts(session, f_before, key), _counts(session, f_after, key)
        effort_a, effort_b = _effort(session, f_before, key), _effort(session, f_after, key)
        out: list[ShiftRow] = []
        for group in sorted(set(a) | set(b)):
            (ma, na), (mb, nb) = a.get(group, (0, 0)), b.get(group, (0, 0))
            shown_a: int | None = ma
            shown_b: int | None = mb
            if policy is not None:
                shown_a = None if ma and policy.hides(ma, na) else ma
                shown_b = None if mb and policy.hides(mb, nb) else mb
                # Nothing left to show: every non-zero value was withheld.
                if not shown_a and not shown_b and (shown_a is None or shown_b is None):
                    suppressed += 1
                    continue
            delta: int | None = None
            direction: Direction = "withheld"
            if shown_a is not None and shown_b is not None:
                delta, direction = shown_b - shown_a, _direction(ma, mb)
            row: ShiftRow = make(group, shown_a, shown_b, delta, direction)
            out.append(
                row.model_copy(update=_normalised(group, effort_a, effort_b, shown_a, shown_b))
            )
        return sorted(out, key=lambda r: (-(abs(r.delta) if r.delta is not None else -1),))

    by_country = rows(
        "country",
        lambda g, a, b, d, direction: ShiftRow(
            country=g[0], matches_before=a, matches_after=b, delta=d, direction=direction
        ),
    )
    by_hoster = rows(
        "hoster",
        lambda g, a, b, d, direction: ShiftRow(
            country=g[0],
            hoster=g[1],
            asn=int(g[2]),
            matches_before=a,
            matches_after=b,
            delta=d,
            direction=direction,
        ),
    )
    return Shifts(
        generated_at=now,
        before_start=before[0],
        before_end=before[1],
        after_start=after[0],
        after_end=after[1],
        hash_family=hash_family,
        tier="full" if policy is None else "viewer",
        by_country=by_country,
        by_hoster=by_hoster,
        suppressed_rows=suppressed,
        period_seconds=int(length_before.total_seconds()),
        media=media,
    )


def _normalised(
    group: tuple[Any, ...],
    effort_a: Effort,
    effort_b: Effort,
    shown_a: int | None,
    shown_b: int | None,
) -> dict[str, Any]:
    """The row's images hashed and prevalence per period; a withheld count withholds its
    prevalence too (images times prevalence would give the count back)."""
    images_a, matches_a = effort_a.get(group, (None, 0))
    images_b, matches_b = effort_b.get(group, (None, 0))
    p_a = prevalence(matches_a, images_a) if images_a and shown_a is not None else None
    p_b = prevalence(matches_b, images_b) if images_b and shown_b is not None else None
    change = round(p_b.per_10k - p_a.per_10k, 4) if p_a and p_b else None
    return {
        "images_before": images_a,
        "images_after": images_b,
        "prevalence_before": p_a,
        "prevalence_after": p_b,
        "prevalence_change": change,
    }


def _span_text(length: Any) -> str:
    seconds = int(length.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


# --- CSV ------------------------------------------------------------------------------------

PictureSection = Literal["by_country", "by_hoster", "by_family", "by_period", "by_node"]


def rows_to_csv(rows: Sequence[BaseModel], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        data = row.model_dump(mode="json")
        if isinstance(data.get("prevalence"), dict):  # a spreadsheet has no nested objects
            found = data["prevalence"]
            data.update(
                per_10k=found["per_10k"],
                per_10k_lower=found["lower"],
                per_10k_upper=found["upper"],
            )
        writer.writerow(["" if data.get(c) is None else _safe_cell(data[c]) for c in columns])
    return buffer.getvalue()


def _safe_cell(value: Any) -> Any:
    # Hoster names come from the web: keep spreadsheets from running them as formulas.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# Issue 16: the distinct count's bounds, and the coverage behind a place with its prevalence.
_DISTINCT = ("distinct_exact", "distinct_lower", "distinct_upper")
_COVERED = (*_DISTINCT, "pages_fetched", "images_hashed", "per_10k", "per_10k_lower",
            "per_10k_upper")  # fmt: skip
SECTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "by_country": ("country", "matches", "distinct", "nodes", *_COVERED),
    "by_hoster": ("hoster", "asn", "country", "matches", "distinct", "nodes", *_COVERED),
    "by_family": ("hash_family", "matches", "distinct", *_DISTINCT, "media"),
    "by_period": ("period_start", "period_end", "matches", "distinct", *_DISTINCT),
    "by_node": ("node_id", "country", "reports", "matches"),
}
SHIFT_COLUMNS = (
    "country",
    "hoster",
    "asn",
    "matches_before",
    "matches_after",
    "delta",
    "direction",
    "images_before",
    "images_after",
    "per_10k_before",
    "per_10k_after",
    "per_10k_change",
)


def picture_csv(picture: Picture, section: str) -> str:
    rows = getattr(picture, section) or []
    return rows_to_csv(rows, SECTION_COLUMNS[section])
