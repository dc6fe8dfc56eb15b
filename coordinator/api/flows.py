"""GET /v1/flows: displacement between consecutive report periods (a router of the API)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from coordinator.auth import Scope
from coordinator.config import CoordinatorSettings
from coordinator.deps import PrincipalDep, SessionDep, checked_period
from coordinator.flows import FlowFilter, Flows, FlowsBy, build_flows
from coordinator.views import SuppressionPolicy
from protocol.hashes import Media, ReportFamily


def flows_router(settings: CoordinatorSettings, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter()
    suppression = SuppressionPolicy(settings.picture_min_count, settings.picture_min_nodes)

    @router.get(
        "/v1/flows",
        response_model=Flows,
        response_model_exclude_none=False,
        summary="Displacement: items removed from a hoster or country and found elsewhere next.",
        description="Per pair of consecutive report periods of equal length: per place the "
        "distinct listed items before and after, removed and new, and the flows A -> B (items "
        "removed from A and present at B in the next period), from the nodes' Theta sketches "
        "of keyed item identities. Every figure carries its bounds (exact below 2^15 members). "
        "Viewer tier: small figures and flows are withheld.",
    )
    def get_flows(
        session: SessionDep,
        principal: PrincipalDep,
        period_start: Annotated[
            datetime | None, Query(description="Reports whose period starts at/after this.")
        ] = None,
        period_end: Annotated[
            datetime | None, Query(description="Reports whose period ends at/before this.")
        ] = None,
        by: Annotated[FlowsBy, Query(description="Places are hosters or countries.")] = "hoster",
        hash_family: Annotated[
            ReportFamily | None, Query(description="Only items matched by this hash family.")
        ] = None,
        media: Annotated[
            Media | None, Query(description="Only items of image or of video families.")
        ] = None,
    ) -> Flows:
        principal.require(Scope.PICTURE_READ)
        start, end = checked_period(period_start, period_end)
        detail = principal.can(Scope.PICTURE_DETAIL)
        return build_flows(
            session,
            FlowFilter(start, end, hash_family, media),
            by,
            clock(),
            None if detail else suppression,
        )

    return router
