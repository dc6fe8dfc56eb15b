"""New material endpoints (issue 14, a router of the API): JSON, and CSV as in the picture."""

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
from coordinator.discovery import DISCOVERY_COLUMNS, Discovery, build_discovery
from coordinator.hoster_filter import HosterFilter, HosterFilterDep
from coordinator.views import SuppressionPolicy, rows_to_csv

_SUMMARY = (
    "New material: images on no list, found beside known material by the nodes (candidates), "
    "and those an agency's analyst confirmed or rejected, per country, hoster and period."
)


def discovery_router(settings: CoordinatorSettings, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()
    suppression = SuppressionPolicy(settings.picture_min_count, settings.picture_min_nodes)

    def discovery(session: Session, principal: Principal, filters: HosterFilter) -> Discovery:
        principal.require(Scope.PICTURE_READ)
        detail = principal.can(Scope.PICTURE_DETAIL)
        return build_discovery(session, filters, clock(), None if detail else suppression)

    def as_csv(result: Discovery) -> PlainTextResponse:
        return PlainTextResponse(rows_to_csv(result.rows, DISCOVERY_COLUMNS), media_type="text/csv")

    @router.get("/v1/picture/discovery", response_model=Discovery, summary=_SUMMARY)
    def get_discovery(
        session: SessionDep,
        principal: PrincipalDep,
        filters: HosterFilterDep,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
    ) -> Any:
        result = discovery(session, principal, filters)
        return as_csv(result) if format == "csv" else result

    @router.get(
        "/v1/picture/discovery.csv",
        response_class=PlainTextResponse,
        summary="The new material per hoster as CSV.",
    )
    def get_discovery_csv(
        session: SessionDep, principal: PrincipalDep, filters: HosterFilterDep
    ) -> PlainTextResponse:
        return as_csv(discovery(session, principal, filters))

    return router
