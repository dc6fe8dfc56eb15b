"""The admin pages' write actions: create and revoke invitations, approve enrolled nodes,
revoke nodes and keys. Each calls the same service function as the API route (so the audit
log records the same action, actor and subject) and is reachable only with the dashboard's
session cookie, a matching CSRF header and a same-origin request.

Errors are the API's JSON errors ({"error": {"code", "message"}}); `csrf_refused` (403) when
the CSRF header is missing or wrong or the request came from another site.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from protocol.errors import ProtocolError

from .. import membership
from ..auth import Principal, Scope
from ..db import new_session
from ..deps import SESSION_COOKIE, SessionDep, token_principal
from ..errors import InvalidRequest, NotFound, RegistryError, TooLarge, Unauthenticated
from ..registry import revoke_key, revoke_node
from .security import SECURITY_HEADERS, csrf_ok, same_origin

MAX_ACTION_BODY = 4 * 1024
ACTIONS = "/dashboard/admin/actions"


class CsrfRefused(ProtocolError):
    """A dashboard write without the session's CSRF token, or from another site."""

    code = "csrf_refused"
    http_status = 403


class NewInvitation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    country: str = Field(min_length=2, max_length=2)
    ttl_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    note: str | None = Field(default=None, max_length=200)


def _json(content: dict[str, Any]) -> JSONResponse:
    response = JSONResponse(content)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["cache-control"] = "no-store"
    return response


def _admin(request: Request, session: Session) -> Principal:
    """The admin behind this request's session cookie, after the CSRF and origin checks."""
    if not same_origin(request):
        raise CsrfRefused("refused: the request came from another site")
    token = request.cookies.get(SESSION_COOKIE, "").strip()
    if not token:
        raise Unauthenticated("log in to the dashboard first")
    if not csrf_ok(request, token):
        raise CsrfRefused("refused: missing or wrong CSRF token; reload the page")
    principal = token_principal(request, session, token)
    principal.require(Scope.MEMBERS_WRITE)
    return principal


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ACTION_BODY:
            raise TooLarge(f"request body over {MAX_ACTION_BODY} bytes")
    return body


def admin_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post(f"{ACTIONS}/invitations")
    async def create_invitation(request: Request) -> JSONResponse:
        raw = await _body(request)

        def work() -> JSONResponse:
            with new_session(request.app.state.engine) as session:
                principal = _admin(request, session)
                try:
                    body = NewInvitation.model_validate(json.loads(raw or b"null"))
                except (ValueError, ValidationError) as exc:
                    raise InvalidRequest(f"invitation: {_first_error(exc)}") from None
                settings = request.app.state.settings
                ttl = timedelta(hours=body.ttl_hours) if body.ttl_hours else settings.invitation_ttl
                issued = membership.create_invitation(
                    session, country=body.country, ttl=ttl, now=request.app.state.clock(),
                    actor=principal.name, note=body.note or None,
                )  # fmt: skip
                return _json(
                    {
                        "invitation_id": issued.row.invitation_id,
                        "code": issued.code,  # shown once, never stored
                        "country": issued.row.country,
                        "expires_at": issued.row.expires_at.isoformat(),
                    }
                )

        return await run_in_threadpool(work)

    @router.post(f"{ACTIONS}/invitations/{{invitation_id}}/revoke")
    def revoke_invitation(
        invitation_id: str, request: Request, session: SessionDep
    ) -> JSONResponse:
        principal = _admin(request, session)
        row = membership.revoke_invitation(
            session, invitation_id, now=request.app.state.clock(), actor=principal.name
        )
        return _json({"invitation_id": row.invitation_id, "expires_at": row.expires_at.isoformat()})

    @router.post(f"{ACTIONS}/members/{{node_id}}/approve")
    def approve(node_id: str, request: Request, session: SessionDep) -> JSONResponse:
        principal = _admin(request, session)
        node = membership.approve(
            session, node_id, now=request.app.state.clock(), actor=principal.name
        )
        return _json({"node_id": node.node_id, "status": node.status})

    @router.post(f"{ACTIONS}/members/{{node_id}}/revoke")
    def revoke_member(node_id: str, request: Request, session: SessionDep) -> JSONResponse:
        principal = _admin(request, session)
        try:
            revoked = revoke_node(
                session, node_id, now=request.app.state.clock(), actor=principal.name
            )
        except RegistryError as exc:
            raise NotFound(str(exc)) from exc
        return _json({"node_id": node_id, "revoked_key_ids": revoked})

    @router.post(f"{ACTIONS}/keys/{{key_id}}/revoke")
    def revoke_one_key(key_id: str, request: Request, session: SessionDep) -> JSONResponse:
        principal = _admin(request, session)
        try:
            row = revoke_key(session, key_id, now=request.app.state.clock(), actor=principal.name)
        except RegistryError as exc:
            raise NotFound(str(exc)) from exc
        return _json({"node_id": row.node_id, "revoked_key_ids": [key_id]})

    return router


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
    return "the body must be a JSON object"
