"""The candidate review API (issue 14), served with the notices API (node/notices/api.py
``create_app`` includes ``router``) and its bearer tokens: the token's name is the actor.

Routes: GET /v1/candidates[?state=&host=&hoster=&country=&min_score=&members=&limit=&offset=],
GET /v1/candidates/{id}[?hashes=true], POST /v1/candidates/{id}/confirm {category, reason},
POST /v1/candidates/{id}/reject {reason}, GET /v1/held[?state=],
POST /v1/held/{entry_id}/release {reason}, POST /v1/held/{entry_id}/discard {reason}.
Errors are JSON ``{"error": {"code", "message"}}``: 401 without a valid token, 404 unknown,
409 already decided, 422 bad input. Every consultation and decision is audited.

A rejection checks the rejected images' PDQ against the list entries through the index
``request.app.state.match_index`` returns when the serving process set one (a callable giving
a MatchIndex), else by equal value only (node.discovery.verdicts).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from node.discovery import flood, queue, verdicts
from node.discovery.flags import DEFAULT_FLAG_AFTER
from node.discovery.models import HELD
from node.notices.tokens import Caller
from protocol.models import utcnow

router = APIRouter()

STATUS = {
    "not_found": 404,
    "already_decided": 409,
    "wrong_state": 409,  # decided meanwhile by someone else
}


def _error(code: str, message: str) -> JSONResponse:
    status = STATUS.get(code, 422)
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


# Database ids are 64-bit: a larger number is bad input (422), not a database error (500).
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(min_length=1, max_length=verdicts.MAX_CATEGORY)
    reason: str = Field(default="", max_length=verdicts.MAX_REASON)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=verdicts.MAX_REASON)


@router.get("/v1/candidates")
def candidates(
    request: Request,
    actor: Caller,
    state: Annotated[str, Query()] = "pending",
    host: Annotated[str | None, Query()] = None,
    hoster: Annotated[str | None, Query()] = None,
    country: Annotated[str | None, Query()] = None,
    min_score: Annotated[float | None, Query()] = None,
    members: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query()] = 100,
    offset: Annotated[int, Query(le=2**63 - 1)] = 0,
) -> Any:
    engine = _engine(request)
    filters = queue.Filters(
        state=None if state == "all" else state,
        host=host,
        hoster=hoster,
        country=country,
        min_score=min_score,
        members=members,
        limit=limit,
        offset=offset,
    )
    try:
        rows = queue.list_candidates(engine, filters)
    except queue.QueueError as exc:
        return _error(exc.code, str(exc))
    queue.consulted(
        engine,
        "candidates",
        actor=actor,
        via="list via API",
        details={**filters.as_dict(), "returned": len(rows)},
    )
    return {"candidates": rows}


@router.get("/v1/candidates/{candidate_id}")
def candidate(
    request: Request,
    candidate_id: Id,
    actor: Caller,
    hashes: Annotated[bool, Query()] = False,
) -> Any:
    engine = _engine(request)
    try:
        detail = queue.candidate_detail(engine, candidate_id, hashes=hashes)
    except queue.QueueError as exc:
        return _error(exc.code, str(exc))
    queue.consulted(
        engine,
        f"candidate:{candidate_id}",
        actor=actor,
        via="show via API",
        details={"hashes": hashes},
    )
    return detail


@router.post("/v1/candidates/{candidate_id}/confirm")
def confirm(request: Request, candidate_id: Id, body: Confirm, actor: Caller) -> Any:
    try:
        verdict = verdicts.confirm(
            _engine(request), candidate_id, actor, body.category, body.reason, now=utcnow()
        )
    except verdicts.VerdictError as exc:
        return _error(exc.code, str(exc))
    return verdict.as_dict()


@router.post("/v1/candidates/{candidate_id}/reject")
def reject(request: Request, candidate_id: Id, body: Reason, actor: Caller) -> Any:
    source = getattr(request.app.state, "match_index", None)
    flag_after = getattr(request.app.state, "flag_after_rejections", None)
    try:
        verdict = verdicts.reject(
            _engine(request),
            candidate_id,
            actor,
            body.reason,
            flag_after=flag_after or DEFAULT_FLAG_AFTER,
            index=source() if callable(source) else None,
            now=utcnow(),
        )
    except verdicts.VerdictError as exc:
        return _error(exc.code, str(exc))
    return verdict.as_dict()


@router.get("/v1/held")
def held(request: Request, actor: Caller, state: Annotated[str, Query()] = HELD) -> Any:
    engine = _engine(request)
    try:
        rows = flood.list_held(engine, state)
    except flood.HeldError as exc:
        return _error(exc.code, str(exc))
    queue.consulted(
        engine,
        "held",
        actor=actor,
        via="held via API",
        details={"state": state, "returned": len(rows)},
    )
    return {"held": rows}


def _held(request: Request, entry_id: int, body: Reason, actor: str, keep: bool) -> Any:
    engine = _engine(request)
    try:
        if keep:
            decision = flood.release(engine, entry_id=entry_id, actor=actor, reason=body.reason)
        else:
            flag_after = getattr(request.app.state, "flag_after_rejections", None)
            decision = flood.discard(
                engine,
                entry_id=entry_id,
                actor=actor,
                reason=body.reason,
                flag_after=flag_after or DEFAULT_FLAG_AFTER,
            )
    except flood.HeldError as exc:
        return _error(exc.code, str(exc))
    return decision.as_dict()


@router.post("/v1/held/{entry_id}/release")
def release(request: Request, entry_id: Id, body: Reason, actor: Caller) -> Any:
    return _held(request, entry_id, body, actor, True)


@router.post("/v1/held/{entry_id}/discard")
def discard(request: Request, entry_id: Id, body: Reason, actor: Caller) -> Any:
    return _held(request, entry_id, body, actor, False)
