"""Removal statistics endpoints (a router of the API): JSON, and CSV as in the picture."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from sqlmodel import Session

from coordinator.auth import Principal, Scope
from coordinator.config import CoordinatorSettings
from coordinator.deps import PrincipalDep, SessionDep
from coordinator.hoster_filter import HosterFilter, HosterFilterDep
from coordinator.removals import REMOVAL_COLUMNS, Removals, build_removals
from coordinator.views import SuppressionPolicy, rows_to_csv


def removals_router(settings: CoordinatorSettings, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()
    suppression = SuppressionPolicy(settings.picture_min_count, settings.picture_min_nodes)

    def removals(session: Session, principal: Principal, filters: HosterFilter) -> Removals:
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
        filters: HosterFilterDep,
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
        session: SessionDep, principal: PrincipalDep, filters: HosterFilterDep
    ) -> PlainTextResponse:
        return as_csv(removals(session, principal, filters))

    return router
