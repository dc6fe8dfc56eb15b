"""The node's approval API: analysts list, inspect, approve and reject notices over HTTP.

Served by `libra node notices api` (uvicorn, 127.0.0.1:8710 by default; it is a separate
process from `serve`, so the analysts' endpoint can be started, stopped and firewalled on its
own). Every request needs ``Authorization: Bearer <token>``; tokens are made by
`libra node notices token-create NAME`, shown once, and stored as SHA-256 only. The token's
name is the actor in the audit log, which records every consultation, approval and rejection.

Routes: GET /v1/notices[?state=...], GET /v1/notices/{id}, POST /v1/notices/{id}/approve,
POST /v1/notices/{id}/reject (a reason is required), GET /v1/notices/stats.
Candidate review (issue 14, node/discovery/api.py, same tokens): GET /v1/candidates,
GET /v1/candidates/{id}[?hashes=true], POST /v1/candidates/{id}/confirm {category, reason},
POST /v1/candidates/{id}/reject {reason}, GET /v1/held, POST /v1/held/{entry_id}/release,
POST /v1/held/{entry_id}/discard {reason}.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from node import audit
from node.notices.models import STATES
from node.notices.queue import NoticeError, decide, list_notices, notice_detail
from node.notices.stats import stats_rows
from node.notices.tokens import Caller, create_token, revoke_token, token_digest
from protocol.models import utcnow

__all__ = ["create_app", "create_token", "revoke_token", "token_digest"]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=1000)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(engine: Engine, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    app = FastAPI(title="LIBRA node notices", docs_url=None, redoc_url=None, openapi_url=None)

    app.state.engine = engine
    from node.discovery.api import router as candidates_router  # issue 14

    app.include_router(candidates_router)

    @app.get("/v1/notices")
    def notices(
        actor: Caller,
        state: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Any:
        if state is not None and state not in STATES:
            return _error(422, "invalid_state", f"state must be one of {', '.join(STATES)}")
        rows = list_notices(engine, state, limit)
        audit.log(
            engine,
            "notice.consult",
            subject="notices",
            actor=actor,
            reason="list via API",
            details={"state": state, "returned": len(rows)},
        )
        return {"notices": rows}

    @app.get("/v1/notices/stats")
    def stats(actor: Caller) -> Any:
        with Session(engine) as session:
            rows = stats_rows(session)
        audit.log(engine, "notice.consult", subject="stats", actor=actor, reason="stats via API")
        return {"hosters": rows}

    @app.get("/v1/notices/{notice_id}")
    def show(notice_id: int, actor: Caller) -> Any:
        try:
            detail = notice_detail(engine, notice_id)
        except NoticeError as exc:
            return _error(404, "not_found", str(exc))
        audit.log(
            engine, "notice.consult", subject=f"notice:{notice_id}", actor=actor, reason="API"
        )
        return detail

    def _decide(notice_id: int, body: Decision, actor: str, approve: bool) -> Any:
        try:
            notice = decide(
                engine, notice_id, approve=approve, actor=actor, reason=body.reason, now=clock()
            )
        except NoticeError as exc:
            message = str(exc)
            if "does not exist" in message:
                return _error(404, "not_found", message)
            if "needs a reason" in message:
                return _error(422, "reason_required", message)
            return _error(409, "wrong_state", message)
        return {"id": notice.id, "state": notice.state}

    @app.post("/v1/notices/{notice_id}/approve")
    def approve(notice_id: int, body: Decision, actor: Caller) -> Any:
        return _decide(notice_id, body, actor, True)

    @app.post("/v1/notices/{notice_id}/reject")
    def reject(notice_id: int, body: Decision, actor: Caller) -> Any:
        return _decide(notice_id, body, actor, False)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
        response = _error(exc.status_code, code.get(exc.status_code, "http_error"), str(exc.detail))
        if exc.status_code == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg')}")

    return app
