"""Removal statistics endpoints (a router of the API): JSON, and CSV as in the picture."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from sqlmodel import Session

from coordinator.auth import Principal, Scope
from coordinator.config import CoordinatorSettings
from coordinator.deps import PrincipalDep, SessionDep, checked_country, checked_period
from coordinator.removals import REMOVAL_COLUMNS, RemovalFilter, Removals, build_removals
from coordinator.views import SuppressionPolicy, rows_to_csv


def _removal_filter(
    period_start: Annotated[
        datetime | None, Query(description="Reports whose period starts at/after this.")
    ] = None,
    period_end: Annotated[
        datetime | None, Query(description="Reports whose period ends at/before this.")
    ] = None,
    country: Annotated[
        str | None, Query(description="Only this country (ISO 3166 alpha-2).")
    ] = None,
    asn: Annotated[int | None, Query(ge=0, le=4294967295, description="Only this ASN.")] = None,
    hoster: Annotated[
        str | None, Query(max_length=200, description="Only this hoster (exact name).")
    ] = None,
) -> RemovalFilter:
    start, end = checked_period(period_start, period_end)
    return RemovalFilter(start, end, checked_country(country), asn, hoster)


RemovalFilterDep = Annotated[RemovalFilter, Depends(_removal_filter)]


def removals_router(settings: CoordinatorSettings, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()
    suppression = SuppressionPolicy(settings.picture_min_count, settings.picture_min_nodes)

    def removals(session: Session, principal: Principal, filters: RemovalFilter) -> Removals:
        principal.require(Scope.PICTURE_READ)
        detail = principal.can(Scope.PICTURE_DETAIL)
        return build_removals(session, filters, clock(), None if detail else suppression)

    def as_csv(result: Removals) -> PlainTextResponse:
        return PlainTextResponse(rows_to_csv(result.rows, REMOVAL_COLUMNS), media_type="text/csv")

    @router.get(
        "/v1/picture/removals",
        response_model=Removals,
        summary="Notices per hoster and what came of them: counts, shares, time to removal.",
    )
    def get_removals(
        session: SessionDep,
        principal: PrincipalDep,
        filters: RemovalFilterDep,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
    ) -> Any:
        result = removals(session, principal, filters)
        return as_csv(result) if format == "csv" else result

    @router.get(
        "/v1/picture/removals.csv",
        response_class=PlainTextResponse,
        summary="The removal statistics as CSV.",
    )
    def get_removals_csv(
        session: SessionDep, principal: PrincipalDep, filters: RemovalFilterDep
    ) -> PlainTextResponse:
        return as_csv(removals(session, principal, filters))

    return router
