"""Where the network crawled (issue 16): GET /v1/coverage.

Per country and hoster, the pages fetched and images hashed there by reports that carried
coverage, the nodes behind them, the matches found in those same reports and the prevalence
(matches per 10,000 images, Wilson 95 %). A place no report covered is absent: the dashboard
shows it as "not crawled", which is different from "crawled, nothing found" (a row with 0
matches). Served from the rollups, so it agrees with the picture's coverage figures.

Viewer tier: a place whose coverage fewer than ``min_nodes`` nodes reported is withheld (its
effort would be one node's), and a shown place's matches and prevalence are withheld when
below ``min_count`` but not 0 (images times prevalence would give a small count back).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session

from protocol.models import UtcDatetime

from .auth import Scope
from .config import CoordinatorSettings
from .deps import FilterDep, PrincipalDep, SessionDep
from .picture import CoverageSums, Filters, PictureFilter, aggregate_raw
from .prevalence import Prevalence, prevalence
from .views import SuppressionPolicy


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CoverageTotals(_Out):
    """The filtered place over every covered report: their effort, nodes and number, and
    (added to the contract's four) the matches in them and their prevalence."""

    pages_fetched: int
    images_hashed: int
    nodes: int
    reports: int
    matches: int
    prevalence: Prevalence | None


class CoverageCountry(_Out):
    country: str
    pages_fetched: int
    images_hashed: int
    hosters: int  # hosters crawled in the country
    nodes: int
    matches: int | None  # None: withheld (viewer tier)
    prevalence: Prevalence | None


class CoverageHoster(_Out):
    country: str
    asn: int
    hoster: str
    pages_fetched: int
    images_hashed: int
    nodes: int
    matches: int | None
    prevalence: Prevalence | None


class CoverageSuppression(_Out):
    min_count: int
    min_nodes: int
    by_country: int  # rows withheld (fewer nodes than min_nodes)
    by_hoster: int
    matches_withheld: int  # shown rows whose matches and prevalence were withheld


class Coverage(_Out):
    generated_at: UtcDatetime
    filters: Filters
    totals: CoverageTotals
    countries: list[CoverageCountry]
    hosters: list[CoverageHoster]
    tier: str = "full"
    suppression: CoverageSuppression | None = None


def build_coverage(
    session: Session,
    filters: PictureFilter,
    now: datetime,
    policy: SuppressionPolicy | None = None,
    *,
    write_lock: AbstractContextManager[Any] | None = None,
) -> Coverage:
    """Coverage for the filters (period, country, ASN, hoster; a hash family restricts the
    matches), from the rollups brought up to date first."""
    from .rollups import aggregate_rollups, refresh_rollups

    refresh_rollups(session, write_lock=write_lock)
    if filters.media is None:
        sums = aggregate_rollups(session, filters, distinct=False).coverage
    else:  # issue 13: the rollups hold no per-media rows; the cells give the same sums
        sums = aggregate_raw(session, filters).coverage
    total = sums.get(("total",), CoverageSums())
    hosters_in: dict[str, int] = {}
    for key in sums:
        if key[0] == "hoster":
            hosters_in[key[3]] = hosters_in.get(key[3], 0) + 1
    countries = [
        CoverageCountry(
            country=key[1],
            pages_fetched=s.pages_fetched,
            images_hashed=s.images_hashed,
            hosters=hosters_in.get(key[1], 0),
            nodes=s.nodes,
            matches=s.matches,
            prevalence=prevalence(s.matches, s.images_hashed),
        )
        for key, s in sums.items()
        if key[0] == "country"
    ]
    hosters = [
        CoverageHoster(
            country=key[3],
            asn=key[2],
            hoster=key[1],
            pages_fetched=s.pages_fetched,
            images_hashed=s.images_hashed,
            nodes=s.nodes,
            matches=s.matches,
            prevalence=prevalence(s.matches, s.images_hashed),
        )
        for key, s in sums.items()
        if key[0] == "hoster"
    ]
    result = Coverage(
        generated_at=now,
        filters=Filters(**{name: getattr(filters, name) for name in Filters.model_fields}),
        totals=CoverageTotals(
            pages_fetched=total.pages_fetched,
            images_hashed=total.images_hashed,
            nodes=total.nodes,
            reports=total.rows,
            matches=total.matches,
            prevalence=prevalence(total.matches, total.images_hashed),
        ),
        countries=sorted(countries, key=lambda r: (-r.images_hashed, r.country)),
        hosters=sorted(hosters, key=lambda r: (-r.images_hashed, r.hoster, r.asn, r.country)),
    )
    return result if policy is None else _for_viewer(result, policy)


def _for_viewer(coverage: Coverage, policy: SuppressionPolicy) -> Coverage:
    withheld = 0

    def shown(row: Any) -> Any:
        nonlocal withheld
        if row.matches and row.matches < policy.min_count:
            withheld += 1
            return row.model_copy(update={"matches": None, "prevalence": None})
        return row

    countries = [shown(r) for r in coverage.countries if r.nodes >= policy.min_nodes]
    hosters = [shown(r) for r in coverage.hosters if r.nodes >= policy.min_nodes]
    return coverage.model_copy(
        update={
            "tier": "viewer",
            "countries": countries,
            "hosters": hosters,
            "suppression": CoverageSuppression(
                min_count=policy.min_count,
                min_nodes=policy.min_nodes,
                by_country=len(coverage.countries) - len(countries),
                by_hoster=len(coverage.hosters) - len(hosters),
                matches_withheld=withheld,
            ),
        }
    )


def coverage_router(
    settings: CoordinatorSettings,
    clock: Callable[[], datetime],
    write_lock: AbstractContextManager[Any] | None = None,
) -> APIRouter:
    router = APIRouter()
    suppression = SuppressionPolicy(settings.picture_min_count, settings.picture_min_nodes)

    @router.get(
        "/v1/coverage",
        response_model=Coverage,
        summary="Where the network crawled: effort, nodes, matches and prevalence per place.",
        description="Only places some report's coverage reached; any other place was not "
        "crawled. Viewer tier: places fewer than min_nodes nodes covered are withheld, and "
        "small non-zero match counts (with their prevalence).",
    )
    def get_coverage(session: SessionDep, principal: PrincipalDep, filters: FilterDep) -> Coverage:
        principal.require(Scope.PICTURE_READ)
        detail = principal.can(Scope.PICTURE_DETAIL)
        return build_coverage(
            session, filters, clock(), None if detail else suppression, write_lock=write_lock
        )

    return router
