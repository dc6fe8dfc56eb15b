"""The coordinator's HTTP API.

Every error is JSON ``{"error": {"code", "message"}}``. Protocol failures keep their own status
and code; anything unexpected becomes 503 ``internal_error`` with no detail (the node's outbox
retries on 5xx), and is logged here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from protocol.errors import ProtocolError
from protocol.hashes import HashFamily
from protocol.models import ReportAck, UtcDatetime, utcnow

from .config import CoordinatorSettings
from .db import create_schema, make_engine, new_session
from .errors import InvalidRequest, TooLarge
from .ingest import IngestPolicy, ingest
from .picture import Picture, PictureFilter, build_picture
from .registry import list_nodes

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


class _CatchAll:
    """ASGI layer around the routing/exception layer: any unhandled exception becomes 503 JSON.

    Starlette's own ``Exception`` handler re-raises after responding; this layer does not, so
    servers and test clients see a clean 503 and nothing else.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(503, "internal_error", "internal error; retry later")
            await response(scope, receive, send)


class KeyInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    key_id: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None


class NodeInfo(BaseModel):
    """Public registry entry: no secrets and no operator contact data."""

    model_config = ConfigDict(frozen=True)
    node_id: str
    country: str
    status: str
    keys: list[KeyInfo]
    reports: int
    last_report_at: UtcDatetime | None


class NodeList(BaseModel):
    model_config = ConfigDict(frozen=True)
    nodes: list[NodeInfo]


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: str


def _session(request: Request) -> Iterator[Session]:
    with new_session(request.app.state.engine) as session:
        yield session


# Module level: FastAPI resolves these (string) annotations from the module's globals.
SessionDep = Annotated[Session, Depends(_session)]


async def _read_limited(request: Request, limit: int) -> bytes:
    """Read the body, refusing early on Content-Length and while streaming (chunked bodies)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise InvalidRequest("Content-Length is not a number") from None
        if too_big:
            raise TooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: CoordinatorSettings,
    *,
    engine: Engine | None = None,
    clock: Clock = utcnow,
) -> FastAPI:
    """Build the API. ``engine`` overrides settings.database_url (tests use it); the schema is
    created if missing. ``clock`` supplies "now" for freshness checks and timestamps."""
    if engine is None:
        engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    policy = IngestPolicy(
        max_report_age=settings.max_report_age, max_future_skew=settings.max_future_skew
    )

    app = FastAPI(
        title="LIBRA coordinator",
        version="1",
        summary="Node registry, verified ingest of signed aggregate reports, global picture.",
    )
    app.state.engine = engine
    app.state.settings = settings
    app.add_middleware(_CatchAll)

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProtocolError)
        return error_response(exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

    @app.post(
        "/v1/reports",
        response_model=ReportAck,
        summary="Submit one signed report (a DSSE envelope as the JSON body).",
    )
    async def post_report(request: Request) -> ReportAck:
        body = await _read_limited(request, settings.max_body_bytes)
        now = clock()

        def work() -> ReportAck:
            with new_session(engine) as session:
                return ingest(session, body, now, policy=policy)

        try:
            ack = await run_in_threadpool(work)
        except ProtocolError as exc:
            log.info("rejected report: %s (%s)", exc.code, exc.message)
            raise
        return ack

    @app.get("/v1/picture", response_model=Picture, summary="The aggregated global picture.")
    def get_picture(
        session: SessionDep,
        period_start: Annotated[
            datetime | None, Query(description="Reports whose period starts at/after this.")
        ] = None,
        period_end: Annotated[
            datetime | None, Query(description="Reports whose period ends at/before this.")
        ] = None,
        hash_family: Annotated[
            HashFamily | None, Query(description="Only cells of this hash family.")
        ] = None,
    ) -> Picture:
        start, end = _as_utc(period_start), _as_utc(period_end)
        if start is not None and end is not None and end <= start:
            raise InvalidRequest("period_end must be after period_start")
        return build_picture(
            session,
            PictureFilter(period_start=start, period_end=end, hash_family=hash_family),
            clock(),
        )

    @app.get("/v1/nodes", response_model=NodeList, summary="The public node registry.")
    def get_nodes(session: SessionDep) -> NodeList:
        return NodeList(
            nodes=[
                NodeInfo(
                    node_id=view.node_id,
                    country=view.country,
                    status=view.status,
                    keys=[
                        KeyInfo(key_id=k.key_id, created_at=k.created_at, revoked_at=k.revoked_at)
                        for k in view.keys
                    ],
                    reports=view.reports,
                    last_report_at=view.last_report_at,
                )
                for view in list_nodes(session)
            ]
        )

    @app.get("/healthz", response_model=Health, summary="Liveness and database reachability.")
    def healthz(session: SessionDep) -> Health:
        session.connection().execute(text("SELECT 1"))
        return Health(status="ok")

    return app


def _as_utc(value: datetime | None) -> datetime | None:
    # A query timestamp without a zone is read as UTC, the only zone the protocol uses.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
