"""FastAPI dependencies shared by the coordinator's routers: session, caller, picture filter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlmodel import Session

from protocol.hashes import Media, ReportFamily

from .auth import Principal, Role, anonymous, authenticate
from .db import new_session
from .errors import InvalidRequest, Unauthenticated
from .picture import PictureFilter


def _session(request: Request) -> Iterator[Session]:
    with new_session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


# The dashboard's login: the pasted API token, kept in an HttpOnly, SameSite=Strict cookie.
SESSION_COOKIE = "libra_session"
# The cookie authenticates reads only: with SameSite=Strict and no state change reachable
# through it, a forged cross-site request has nothing to gain (no CSRF surface).
_COOKIE_METHODS = frozenset({"GET", "HEAD"})


def _principal(request: Request, session: SessionDep) -> Principal:
    header = request.headers.get("authorization")
    if header is None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and request.method in _COOKIE_METHODS:
            return token_principal(request, session, cookie.strip())
        if request.app.state.settings.anonymous_role == "viewer":
            return anonymous(Role.VIEWER)
        raise Unauthenticated("this endpoint needs an API token: Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use Authorization: Bearer <token>")
    return token_principal(request, session, token.strip())


def token_principal(request: Request, session: Session, token: str) -> Principal:
    """Resolve an API token (``lbr_...``) or, when OIDC is configured, a JWT."""
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


def checked_period(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """A query's period bounds in UTC, refused when empty or reversed."""
    start, end = as_utc(start), as_utc(end)
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("period_end must be after period_start")
    return start, end


def checked_country(country: str | None) -> str | None:
    """A query's country filter as an upper-case ISO 3166 alpha-2 code."""
    if country is None:
        return None
    country = country.strip().upper()
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise InvalidRequest(f"country {country!r} must be an ISO 3166 alpha-2 code")
    return country


def _filters(
    period_start: Annotated[
        datetime | None, Query(description="Reports whose period starts at/after this.")
    ] = None,
    period_end: Annotated[
        datetime | None, Query(description="Reports whose period ends at/before this.")
    ] = None,
    hash_family: Annotated[
        ReportFamily | None, Query(description="Only cells of this hash family.")
    ] = None,
    country: Annotated[
        str | None, Query(description="Only cells of this country (ISO 3166 alpha-2).")
    ] = None,
    hoster: Annotated[
        str | None, Query(max_length=200, description="Only cells of this hoster (exact name).")
    ] = None,
    asn: Annotated[int | None, Query(ge=0, le=4294967295, description="Only this ASN.")] = None,
    media: Annotated[
        Media | None,
        Query(description="Only cells of image families or of video families (vpdq-frame: image)."),
    ] = None,
) -> PictureFilter:
    start, end = checked_period(period_start, period_end)
    return PictureFilter(
        period_start=start,
        period_end=end,
        hash_family=hash_family,
        country=checked_country(country),
        hoster=hoster,
        asn=asn,
        media=media,
    )


FilterDep = Annotated[PictureFilter, Depends(_filters)]
NodesQ = Annotated[
    bool, Query(description="Add the per-node breakdown (admins, or viewers if policy allows).")
]
