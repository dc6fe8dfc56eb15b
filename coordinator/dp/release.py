"""The viewer tier in DP mode: the exact picture in, a noisy picture with its privacy label out.

Unit of privacy: one match, i.e. one matched image URL as one node's report for one period
counts it (once: docs/protocol.md §3 ``matches``). Two databases are neighbours when they hold
the same reports from the same crawl and differ only in whether one hashed image matched. A
URL that stays up and is counted in k reports is k units (group privacy: k times epsilon).

One match changes one (country, hoster, ASN) cell, one hash family and one reporting period
by 1 each, so the three disjoint histograms released here (hosters, families, periods)
together have L1 sensitivity 3, and one discrete Laplace measurement over their
concatenation with scale 3/epsilon costs epsilon.

Derived by post-processing (free): each country = the sum of its hosters' noisy counts; the
total = the inverse-variance weighted mean of the families' sum and the periods' sum (both
count every match once; with 11 families and one period that is 11/12 of one cell's
variance, not 11 cells'); image/video matches from the families' media. Sums are taken
over the unrounded noisy values (rounding each cell up to 0 first would bias every sum
upwards by about half the noise per empty cell), then every figure is rounded to be
non-negative and rows whose noisy count is 0 are left out; so a country need not equal the
sum of the hoster rows shown for it.

Not published in DP mode (each would need its own share of epsilon, or rests on exact
counts): distinct counts and their bounds, contributing nodes per row, the match-method
breakdown (all matches count as "unspecified"), prevalence, and per-row crawl effort (its
presence would tell which rows had real matches). Integer fields among them read 0; the
label's ``withheld`` names them. Report, node and crawl-effort totals stay exact: adding or
removing one match does not change them.

The rows that can appear do not depend on the matches, or their mere presence would leak
(a hoster shown at all would have had a match): hosters are those the counted reports carry
crawl coverage for, families every family the filters allow, periods those of the counted
reports. Matches at a hoster no counted report carried coverage for are in the totals, the
family and period rows, but in no hoster or country row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlmodel import Session, col, select

from protocol.hashes import ReportFamily, media_of

from ..models import CoverageRow, ReportRow
from ..picture import (
    CountryRow,
    FamilyRow,
    HosterRow,
    MediaCounts,
    MethodCounts,
    PeriodRow,
    Picture,
    PictureFilter,
    Totals,
    coverage_conditions,
)
from .accountant import BudgetPolicy, release, windows_of
from .mechanism import noisy_counts

SENSITIVITY = 3  # hosters + families + periods: one match changes one cell of each by 1
UNIT = (
    "one match: one matched image URL counted once in one node's report for one period "
    "(the same crawl with or without that one match); a URL seen in k reports is k units"
)
NOISY = ("by_hoster.matches", "by_family.matches", "by_period.matches")
DERIVED = ("by_country.matches", "totals.matches", "totals.by_media", "by_method.unspecified")
WITHHELD = (
    "distinct",
    "distinct_lower",
    "distinct_upper",
    "nodes",
    "by_method (except unspecified)",
    "prevalence",
    "pages_fetched and images_hashed per row",
    "by_node",
)

HosterKey = tuple[str, str, int]  # (country, hoster, asn)
_K = TypeVar("_K")
Period = tuple[datetime, datetime]


class Privacy(BaseModel):
    """The label served with every figure of a DP picture."""

    model_config = ConfigDict(frozen=True)
    mechanism: Literal["discrete_laplace"] = "discrete_laplace"  # mechanism.MECHANISM
    epsilon: float  # what this release cost (OpenDP's privacy map)
    delta: float = 0.0  # pure epsilon-DP
    scale: float  # noise scale b: standard deviation about 1.41 b
    sensitivity: int  # L1 sensitivity of the released vector
    unit: str
    budget_per_window: float
    window_seconds: int
    windows_charged: int
    releases: int = 1  # a waterbed view compares two releases (coordinator/dp/shifts.py)
    noisy: list[str]
    derived: list[str]
    withheld: list[str]


class DpPicture(Picture):
    """The viewer picture with noisy counts and the label that says how they were made."""

    privacy: Privacy


def dp_picture(
    session: Session,
    exact: Picture,
    filters: PictureFilter,
    policy: BudgetPolicy,
    now: datetime,
) -> DpPicture:
    """The viewer's noisy picture of ``exact`` (the full tier for ``filters``): the stored
    release when this query on these reports was answered before, else a new one charged to
    the budget (PrivacyBudgetExhausted when a window cannot pay)."""
    reports = _counted_reports(session, filters)
    digest = hashlib.sha256("\n".join(r for r, _ in reports).encode()).hexdigest()
    windows = windows_of((p for _, p in reports), policy.window)
    query = {
        "filters": exact.filters.model_dump(mode="json"),
        "sensitivity": SENSITIVITY,
    }

    def answer() -> str:
        periods = sorted({p for _, p in reports})
        hosters = _hoster_domain(session, filters)
        return _noisy(exact, hosters, _families(filters), periods, policy, len(windows), now)

    stored = release(
        session,
        view="picture",
        query=query,
        data_digest=digest,
        windows=windows,
        policy=policy,
        now=now,
        make_answer=answer,
    )
    return DpPicture.model_validate_json(stored)


def _counted_reports(session: Session, filters: PictureFilter) -> list[tuple[str, Period]]:
    """(report_id, period) of every report the picture counts, by report_id."""
    where = []
    if filters.period_start is not None:
        where.append(col(ReportRow.period_start) >= filters.period_start)
    if filters.period_end is not None:
        where.append(col(ReportRow.period_end) <= filters.period_end)
    rows = session.exec(
        select(ReportRow.report_id, ReportRow.period_start, ReportRow.period_end)
        .where(*where)
        .order_by(col(ReportRow.report_id))
    )
    return [(rid, (start, end)) for rid, start, end in rows]


def _hoster_domain(session: Session, filters: PictureFilter) -> list[HosterKey]:
    """The hosters the counted reports carried crawl coverage for: known without looking at
    a single match."""
    where: list[Any] = list(coverage_conditions(filters))
    if filters.period_start is not None:
        where.append(col(ReportRow.period_start) >= filters.period_start)
    if filters.period_end is not None:
        where.append(col(ReportRow.period_end) <= filters.period_end)
    rows = session.exec(
        select(CoverageRow.country, CoverageRow.hoster, CoverageRow.asn)
        .join(ReportRow, col(ReportRow.report_id) == col(CoverageRow.report_id))
        .where(*where)
        .distinct()
    )
    return sorted((country, hoster, int(asn)) for country, hoster, asn in rows)


def _families(filters: PictureFilter) -> list[ReportFamily]:
    return [
        family
        for family in ReportFamily
        if filters.hash_family in (None, family)
        and (filters.media is None or media_of(family) == filters.media)
    ]


def _noisy(
    exact: Picture,
    hosters: list[HosterKey],
    families: list[ReportFamily],
    periods: list[Period],
    policy: BudgetPolicy,
    windows: int,
    now: datetime,
) -> str:
    by_hoster = {(r.country, r.hoster, r.asn): r.matches for r in exact.by_hoster}
    by_family = {r.hash_family: r.matches for r in exact.by_family}
    by_period = {(r.period_start, r.period_end): r.matches for r in exact.by_period}
    true = (
        [by_hoster.get(h, 0) for h in hosters]
        + [by_family.get(f, 0) for f in families]
        + [by_period.get(p, 0) for p in periods]
    )
    noisy = noisy_counts(true, epsilon=policy.epsilon, sensitivity=SENSITIVITY)
    values = iter(noisy.raw)
    raw_hosters = {h: next(values) for h in hosters}
    raw_families = {f: next(values) for f in families}
    raw_periods = {p: next(values) for p in periods}

    raw_countries: dict[str, int] = {}
    for (country, _, _), count in raw_hosters.items():
        raw_countries[country] = raw_countries.get(country, 0) + count
    hoster_counts, family_counts = _rounded(raw_hosters), _rounded(raw_families)
    period_counts, country_counts = _rounded(raw_periods), _rounded(raw_countries)
    total = _total(raw_families.values(), raw_periods.values())
    media = MediaCounts(
        image=max(0, sum(c for f, c in raw_families.items() if media_of(f) == "image")),
        video=max(0, sum(c for f, c in raw_families.items() if media_of(f) == "video")),
    )
    picture = DpPicture(
        generated_at=now,
        filters=exact.filters,
        reports=exact.reports,
        nodes=exact.nodes,
        # Built field by field, never copied: a figure added to the picture later stays at
        # its default here until someone decides how DP mode publishes it.
        totals=Totals(
            matches=total,
            distinct=0,
            pages_fetched=exact.totals.pages_fetched,
            images_hashed=exact.totals.images_hashed,
            hosts_seen=exact.totals.hosts_seen,
            by_method=MethodCounts(unspecified=total),
            by_media=media,
            prevalence=None,
        ),
        by_country=sorted(
            (
                CountryRow(country=c, matches=m, distinct=0, nodes=0, by_method=_methods(m))
                for c, m in country_counts.items()
                if m > 0
            ),
            key=lambda r: (-r.matches, r.country),
        ),
        by_hoster=sorted(
            (
                HosterRow(
                    hoster=h,
                    asn=a,
                    country=c,
                    matches=m,
                    distinct=0,
                    nodes=0,
                    by_method=_methods(m),
                )
                for (c, h, a), m in hoster_counts.items()
                if m > 0
            ),
            key=lambda r: (-r.matches, r.hoster, r.asn, r.country),
        ),
        by_family=sorted(
            (
                FamilyRow(hash_family=f, matches=m, distinct=0, media=media_of(f))
                for f, m in family_counts.items()
                if m > 0
            ),
            key=lambda r: (-r.matches, r.hash_family.value),
        ),
        by_period=[
            PeriodRow(period_start=s, period_end=e, matches=m, distinct=0)
            for (s, e), m in sorted(period_counts.items())
            if m > 0
        ],
        tier="viewer",
        suppression=None,
        by_node=None,
        privacy=Privacy(
            epsilon=noisy.epsilon,
            scale=noisy.scale,
            sensitivity=SENSITIVITY,
            unit=UNIT,
            budget_per_window=policy.budget,
            window_seconds=int(policy.window / timedelta(seconds=1)),
            windows_charged=windows,
            noisy=list(NOISY),
            derived=list(DERIVED),
            withheld=list(WITHHELD),
        ),
    )
    return picture.model_dump_json()


def total_of(families: Sequence[int], periods: Sequence[int]) -> int:
    """Two unbiased estimates of the total, one per partition, weighted by the inverse of
    their variances (n cells of equal variance: n times one cell's), rounded to >= 0."""
    n_f, n_p = len(families), len(periods)
    if n_f == 0 or n_p == 0:  # a filter that allows no family, or no report counted
        return max(0, sum(families) if n_p == 0 else sum(periods)) if n_f + n_p else 0
    return max(0, round((n_p * sum(families) + n_f * sum(periods)) / (n_f + n_p)))


def _total(families: Iterable[int], periods: Iterable[int]) -> int:
    return total_of(list(families), list(periods))


def _rounded(raw: dict[_K, int]) -> dict[_K, int]:
    return {key: max(0, value) for key, value in raw.items()}


def _methods(matches: int) -> MethodCounts:
    return MethodCounts(unspecified=matches)


def privacy_header(privacy: Privacy) -> str:
    """The label as one HTTP header value (CSV has no room for it)."""
    return (
        f"mechanism={privacy.mechanism}; epsilon={privacy.epsilon:g}; "
        f"scale={privacy.scale:g}; sensitivity={privacy.sensitivity}"
    )


__all__ = ["DpPicture", "Privacy", "dp_picture", "privacy_header"]
