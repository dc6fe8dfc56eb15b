"""FastAPI dependencies shared by the coordinator's routers: session, caller, picture filter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlmodel import Session

from protocol.hashes import HashFamily

from .auth import Principal, Role, anonymous, authenticate
from .db import new_session
from .errors import InvalidRequest, Unauthenticated
from .picture import PictureFilter


def _session(request: Request) -> Iterator[Session]:
    with new_session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _principal(request: Request, session: SessionDep) -> Principal:
    header = request.headers.get("authorization")
    if header is None:
        if request.app.state.settings.anonymous_role == "viewer":
            return anonymous(Role.VIEWER)
        raise Unauthenticated("this endpoint needs an API token: Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use Authorization: Bearer <token>")
    token = token.strip()
    oidc = request.app.state.oidc
    # Our own tokens start with "lbr_"; anything else is an OIDC JWT when that mode is on.
    if oidc is not None and not token.startswith("lbr_"):
        principal: Principal = oidc.principal(token)
        return principal
    return authenticate(session, token, request.app.state.clock())


PrincipalDep = Annotated[Principal, Depends(_principal)]


def as_utc(value: datetime | None) -> datetime | None:
    # A query timestamp without a zone is read as UTC, the only zone the protocol uses.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _filters(
    period_start: Annotated[
        datetime | None, Query(description="Reports whose period starts at/after this.")
    ] = None,
    period_end: Annotated[
        datetime | None, Query(description="Reports whose period ends at/before this.")
    ] = None,
    hash_family: Annotated[
        HashFamily | None, Query(description="Only cells of this hash family.")
    ] = None,
) -> PictureFilter:
    start, end = as_utc(period_start), as_utc(period_end)
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("period_end must be after period_start")
    return PictureFilter(period_start=start, period_end=end, hash_family=hash_family)


FilterDep = Annotated[PictureFilter, Depends(_filters)]
NodesQ = Annotated[
    bool, Query(description="Add the per-node breakdown (admins, or viewers if policy allows).")
]
