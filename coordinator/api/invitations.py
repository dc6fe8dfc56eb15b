"""`GET /v1/invitations`: the invitation list for admins (the dashboard's admin view uses it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from coordinator.auth import Scope
from coordinator.deps import PrincipalDep, SessionDep
from coordinator.membership import pending_invitations
from protocol.models import UtcDatetime

InvitationState = Literal["pending", "used", "expired"]


class InvitationInfo(BaseModel):
    """An invitation without its code (only its SHA-256 is stored; the code was shown once)."""

    model_config = ConfigDict(frozen=True)
    invitation_id: str
    country: str
    note: str | None
    created_by: str
    created_at: UtcDatetime
    expires_at: UtcDatetime
    used_at: UtcDatetime | None
    used_by_node: str | None
    state: InvitationState


class InvitationList(BaseModel):
    model_config = ConfigDict(frozen=True)
    invitations: list[InvitationInfo]


def invitations_router(clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get(
        "/invitations",
        response_model=InvitationList,
        summary="Every invitation with its state (admins: scope members:write).",
    )
    def get_invitations(session: SessionDep, principal: PrincipalDep) -> InvitationList:
        principal.require(Scope.MEMBERS_WRITE)
        now = clock()
        out: list[InvitationInfo] = []
        for row in pending_invitations(session):
            state: InvitationState
            if row.used_at is not None:
                state = "used"
            elif row.expires_at <= now:
                state = "expired"
            else:
                state = "pending"
            out.append(
                InvitationInfo(
                    invitation_id=row.invitation_id,
                    country=row.country,
                    note=row.note,
                    created_by=row.created_by,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                    used_at=row.used_at,
                    used_by_node=row.used_by_node,
                    state=state,
                )
            )
        return InvitationList(invitations=out)

    return router
