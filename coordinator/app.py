"""The coordinator's HTTP API.

Every error is JSON ``{"error": {"code", "message"}}``. Protocol failures keep their own status
and code; anything unexpected (a server fault, never bad input: the fuzz tests hold that) becomes
503 ``unavailable`` with ``Retry-After`` and no detail (the node's outbox retries on 5xx), and is
logged here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from protocol.errors import ProtocolError
from protocol.hashes import Media, ReportFamily
from protocol.models import AttributionSource, ReportAck, UtcDatetime, utcnow
from protocol.strictjson import StrictJsonError, loads

from . import metrics, openapi, telemetry
from .api.discovery import discovery_router
from .api.flows import flows_router
from .api.invitations import invitations_router
from .api.members import members_router
from .api.removals import removals_router
from .api.tlog import tlog_router
from .auth import Principal, Scope
from .config import CoordinatorSettings
from .coverage import coverage_router
from .dashboard import install_dashboard
from .db import create_schema, make_engine, new_session
from .deps import FilterDep, NodesQ, PrincipalDep, SessionDep, as_utc
from .dp.api import dp_policy, exact_views_guard
from .dp.release import DpPicture, dp_picture, privacy_header
from .dp.shifts import dp_shifts
from .errors import Forbidden, InvalidRequest, RateLimited, TooLarge
from .ingest import IngestPolicy, ingest, ingest_batch
from .picture import Picture, PictureFilter, build_picture, node_breakdown
from .psi.api import psi_router
from .ratelimit import make_rate_limiter
from .rawbody import read_limited, require_json
from .registry import list_nodes
from .snapshot import PICTURE_PAYLOAD_TYPE, load_or_create_key, sign_picture
from .tlog import log_snapshot
from .views import (
    SHIFT_COLUMNS,
    PictureSection,
    Shifts,
    SuppressionPolicy,
    build_shifts,
    for_viewer,
    picture_csv,
    rows_to_csv,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


# Seconds a client waits after 503 unavailable (a server fault: database down, a bug).
UNAVAILABLE_RETRY_AFTER = 30


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"code": code, "message": message}},
        headers=headers,
    )


def protocol_error_response(exc: ProtocolError) -> JSONResponse:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif exc.http_status == 503:
        headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
    return error_response(exc.http_status, exc.code, exc.message, headers)


def unavailable_response() -> JSONResponse:
    return error_response(
        503,
        "unavailable",
        "the coordinator cannot answer now; retry later",
        {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


class _CatchAll:
    """ASGI layer around the routing/exception layer: any unhandled exception becomes 503 JSON.

    Starlette's own ``Exception`` handler re-raises after responding; this layer does not, so
    servers and test clients see a clean 503 and nothing else.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
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
            await unavailable_response()(scope, receive, send)


class KeyInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    key_id: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None
    valid_until: UtcDatetime | None = None


class NodeInfo(BaseModel):
    """Public registry entry: no secrets and no operator contact data."""

    model_config = ConfigDict(frozen=True)
    node_id: str
    country: str
    status: str
    keys: list[KeyInfo]
    reports: int | None  # None: report activity is withheld from this caller's role
    last_report_at: UtcDatetime | None
    # Databases behind the latest report's attribution (admins only; None for other roles).
    attribution_sources: list[AttributionSource] | None = None


class NodeList(BaseModel):
    model_config = ConfigDict(frozen=True)
    nodes: list[NodeInfo]


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)
    status: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    message: str


class BatchItem(BaseModel):
    """The outcome of one envelope of a batch, in request order."""

    model_config = ConfigDict(frozen=True)
    index: int
    http_status: int  # what POST /v1/reports would have answered for it alone
    report_id: str | None = None
    status: str | None = None  # accepted | duplicate
    error: ErrorBody | None = None
    retry_after: int | None = None  # seconds, with http_status 429 (rate_limited)


class BatchResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    results: list[BatchItem]


class CoordinatorKey(BaseModel):
    model_config = ConfigDict(frozen=True)
    key_id: str
    public_key: str
    payload_type: str


def _batch_envelopes(body: bytes, limit: int) -> list[Any]:
    """``{"envelopes": [<DSSE envelope>, ...]}`` -> the envelopes, parsed JSON (each one is
    checked by ingest; a non-object is that envelope's malformed_envelope, not the batch's).

    The body is read by the same strict parser as a single envelope; a defect anywhere in it
    (duplicate key, depth, NaN, lone surrogate, not JSON) refuses the whole batch with
    invalid_request, since no envelope in it can be read reliably."""
    try:
        data = loads(body)
    except StrictJsonError as exc:
        raise InvalidRequest(f"batch body: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("envelopes"), list):
        raise InvalidRequest('batch body must be {"envelopes": [...]}')
    envelopes = data["envelopes"]
    if not envelopes:
        raise InvalidRequest("batch holds no envelopes")
    if len(envelopes) > limit:
        raise TooLarge(f"batch holds {len(envelopes)} envelopes; the limit is {limit}")
    return list(envelopes)


def _span(start: datetime, end: datetime, name: str) -> tuple[datetime, datetime]:
    start_utc, end_utc = as_utc(start), as_utc(end)
    assert start_utc is not None and end_utc is not None
    if end_utc <= start_utc:
        raise InvalidRequest(f"{name}_end must be after {name}_start")
    return start_utc, end_utc


def create_app(
    settings: CoordinatorSettings,
    *,
    engine: Engine | None = None,
    clock: Clock = utcnow,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the API. ``engine`` overrides settings.database_url (tests use it); the schema is
    created if missing. ``clock`` supplies "now" for freshness checks and timestamps."""
    if engine is None:
        engine = make_engine(settings.effective_database_url)
    create_schema(engine)
    limiter = make_rate_limiter(
        settings.redis_url, settings.rate_limit_per_node, settings.rate_limit_burst
    )
    policy = IngestPolicy(
        max_report_age=settings.max_report_age,
        max_future_skew=settings.max_future_skew,
        rate_limit=limiter.check,
    )
    suppression = SuppressionPolicy(settings.picture_min_count, settings.picture_min_nodes)
    dp_budget = dp_policy(settings.viewer)  # issue 15: None unless [viewer] privacy = "dp"
    exact_only = exact_views_guard(dp_budget)  # dp mode: views with exact counts, admins only
    # SQLite has one writer at a time; queueing writers here beats its busy-wait back-off.
    write_lock = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    key_cache: list[Any] = []

    def signing_key() -> Any:
        # Loaded (or created) on first use: a coordinator that never signs needs no key file.
        if not key_cache:
            key_cache.append(load_or_create_key(settings.effective_signing_key_file))
        return key_cache[0]

    app = FastAPI(
        title="LIBRA coordinator",
        version="1",
        summary="Node registry, verified ingest of signed aggregate reports, global picture.",
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.clock = clock
    app.state.oidc = None
    if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:
        from .oidc import OidcVerifier

        app.state.oidc = OidcVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            role_claim=settings.oidc_role_claim,
            algorithms=settings.oidc_algorithms,
        )
    app.add_middleware(_CatchAll)
    openapi.install(app, anonymous_viewer=settings.anonymous_role == "viewer")

    @app.exception_handler(ProtocolError)
    async def _protocol_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProtocolError)
        return protocol_error_response(exc)

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
        if exc.status_code >= 500:  # never a raw 5xx: the one documented fallback
            log.error("HTTP %d raised: %s", exc.status_code, exc.detail)
            return unavailable_response()
        codes = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

    @app.post(
        "/v1/reports",
        response_model=ReportAck,
        summary="Submit one signed report (a DSSE envelope as the JSON body).",
        description="Authenticated by the envelope's Ed25519 signature (a registered, active "
        "node key); no API token is needed. Content-Type must be application/json.",
        openapi_extra=openapi.REPORT_BODY,
    )
    async def post_report(request: Request) -> ReportAck:
        require_json(request)
        body = await read_limited(request, settings.max_body_bytes)
        now = clock()

        def work() -> ReportAck:
            with write_lock, new_session(engine) as session:
                return ingest(session, body, now, policy=policy)

        try:
            ack = await run_in_threadpool(work)
        except ProtocolError as exc:
            log.info("rejected report: %s (%s)", exc.code, exc.message)
            raise
        return ack

    @app.post(
        "/v1/reports/batch",
        response_model=BatchResult,
        summary="Submit several signed reports; each is verified and stored on its own.",
        description="Answers 200 with one result per envelope (its own http_status and error); "
        "a rate-limited envelope carries retry_after, and the response then has Retry-After "
        "(the longest wait). Content-Type must be application/json.",
        openapi_extra=openapi.BATCH_BODY,
    )
    async def post_batch(request: Request) -> JSONResponse:
        require_json(request)
        body = await read_limited(request, settings.max_batch_bytes)
        envelopes = _batch_envelopes(body, settings.max_batch_reports)
        now = clock()

        def work() -> BatchResult:
            with write_lock, new_session(engine) as session:
                outcomes = ingest_batch(session, envelopes, now, policy=policy)
            results: list[BatchItem] = []
            for index, outcome in enumerate(outcomes):
                if isinstance(outcome, ProtocolError):
                    results.append(
                        BatchItem(
                            index=index,
                            http_status=outcome.http_status,
                            error=ErrorBody(code=outcome.code, message=outcome.message),
                            retry_after=outcome.retry_after
                            if isinstance(outcome, RateLimited)
                            else None,
                        )
                    )
                else:
                    results.append(
                        BatchItem(
                            index=index,
                            http_status=200,
                            report_id=outcome.report_id,
                            status=outcome.status,
                        )
                    )
            return BatchResult(results=results)

        result = await run_in_threadpool(work)
        waits = [item.retry_after for item in result.results if item.retry_after is not None]
        headers = {"Retry-After": str(max(waits))} if waits else None
        return JSONResponse(result.model_dump(mode="json"), headers=headers)

    def _picture(
        session: Session,
        principal: Principal,
        filters: PictureFilter,
        include_nodes: bool,
    ) -> Picture:
        principal.require(Scope.PICTURE_READ)
        detail = principal.can(Scope.PICTURE_DETAIL)
        if include_nodes and not (detail or settings.viewer_node_detail):
            raise Forbidden("the per-node breakdown needs scope picture:detail")
        picture = build_picture(session, filters, clock(), write_lock=write_lock)
        if include_nodes:
            picture = picture.model_copy(update={"by_node": node_breakdown(session, filters)})
        if detail:
            return picture
        if dp_budget is not None:  # issue 15: noisy counts instead of small-cell suppression
            if include_nodes:
                raise Forbidden("the per-node breakdown is not published in dp mode")
            with write_lock:
                return dp_picture(session, picture, filters, dp_budget, clock())
        viewer = for_viewer(picture, suppression)
        if include_nodes:  # allowed by policy
            viewer = viewer.model_copy(update={"by_node": picture.by_node})
        return viewer

    @app.get(
        "/v1/picture",
        response_model=Picture,
        response_model_exclude_none=False,
        summary="The aggregated global picture (viewer tier: small cells suppressed).",
    )
    def get_picture(
        session: SessionDep,
        principal: PrincipalDep,
        filters: FilterDep,
        include_nodes: NodesQ = False,
    ) -> Picture | JSONResponse:
        picture = _picture(session, principal, filters, include_nodes)
        if isinstance(picture, DpPicture):  # response_model=Picture would drop its label
            # The header too, as on the CSV and shifts answers: a client reading headers only
            # (a proxy, a cache) learns that these counts are noisy.
            return JSONResponse(
                picture.model_dump(mode="json"),
                headers={"Libra-Privacy": privacy_header(picture.privacy)},
            )
        return picture

    @app.get(
        "/v1/picture.csv",
        response_class=PlainTextResponse,
        summary="One section of the picture as CSV.",
    )
    def get_picture_csv(
        session: SessionDep,
        principal: PrincipalDep,
        filters: FilterDep,
        section: Annotated[
            PictureSection, Query(description="Which breakdown to export.")
        ] = "by_hoster",
    ) -> PlainTextResponse:
        picture = _picture(session, principal, filters, section == "by_node")
        label = (
            {"Libra-Privacy": privacy_header(picture.privacy)}
            if isinstance(picture, DpPicture)
            else None
        )
        return PlainTextResponse(
            picture_csv(picture, section), media_type="text/csv", headers=label
        )

    @app.get(
        "/v1/picture/snapshot",
        summary="The picture as a DSSE envelope signed by the coordinator (verify offline).",
    )
    def get_snapshot(
        session: SessionDep,
        principal: PrincipalDep,
        filters: FilterDep,
        include_nodes: NodesQ = False,
    ) -> JSONResponse:
        picture = _picture(session, principal, filters, include_nodes)
        envelope = sign_picture(picture, signing_key())
        with write_lock:  # every signed snapshot goes into the transparency log
            leaf = log_snapshot(session, envelope, clock())
        return JSONResponse(envelope.to_json(), headers={"Libra-Log-Leaf-Hash": leaf.hex()})

    @app.get(
        "/v1/picture/shifts",
        response_model=Shifts,
        summary="Waterbed view: per country and hoster, how matches moved between two periods.",
    )
    def get_shifts(
        session: SessionDep,
        principal: PrincipalDep,
        before_start: Annotated[datetime, Query(description="Start of the earlier period.")],
        before_end: Annotated[datetime, Query(description="End of the earlier period.")],
        after_start: Annotated[datetime, Query(description="Start of the later period.")],
        after_end: Annotated[datetime, Query(description="End of the later period.")],
        hash_family: Annotated[ReportFamily | None, Query()] = None,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
        media: Annotated[
            Media | None, Query(description="Only cells of image or of video families.")
        ] = None,
    ) -> Any:
        principal.require(Scope.PICTURE_READ)
        before = _span(before_start, before_end, "before")
        after = _span(after_start, after_end, "after")
        detail = principal.can(Scope.PICTURE_DETAIL)
        if dp_budget is not None and not detail:  # issue 15: two noisy pictures compared
            noisy = dp_shifts(
                session, before, after, hash_family, media, dp_budget, clock(), write_lock
            )
            label = {"Libra-Privacy": privacy_header(noisy.privacy)}
            if format == "csv":
                rows = [*noisy.by_country, *noisy.by_hoster]
                csv = rows_to_csv(rows, SHIFT_COLUMNS)
                return PlainTextResponse(csv, media_type="text/csv", headers=label)
            return JSONResponse(noisy.model_dump(mode="json"), headers=label)
        shifts = build_shifts(
            session,
            before,
            after,
            hash_family,
            clock(),
            None if detail else suppression,
            write_lock=write_lock,
            media=media,
        )
        if format == "csv":
            rows = [*shifts.by_country, *shifts.by_hoster]
            return PlainTextResponse(rows_to_csv(rows, SHIFT_COLUMNS), media_type="text/csv")
        return shifts

    @app.get(
        "/v1/coordinator/key",
        response_model=CoordinatorKey,
        summary="The public key that signs picture snapshots (no token needed).",
    )
    def get_coordinator_key() -> CoordinatorKey:
        key = signing_key()
        return CoordinatorKey(
            key_id=key.key_id, public_key=key.public_key_b64, payload_type=PICTURE_PAYLOAD_TYPE
        )

    @app.get("/v1/nodes", response_model=NodeList, summary="The node registry.")
    def get_nodes(session: SessionDep, principal: PrincipalDep) -> NodeList:
        principal.require(Scope.NODES_READ)
        # Report activity per node says which node reported: admins, or viewers by policy.
        activity = principal.can(Scope.PICTURE_DETAIL) or settings.viewer_node_detail
        return NodeList(
            nodes=[
                NodeInfo(
                    node_id=view.node_id,
                    country=view.country,
                    status=view.status,
                    keys=[
                        KeyInfo(
                            key_id=k.key_id,
                            created_at=k.created_at,
                            revoked_at=k.revoked_at,
                            valid_until=k.valid_until,
                        )
                        for k in view.keys
                    ],
                    reports=view.reports if activity else None,
                    last_report_at=view.last_report_at if activity else None,
                    attribution_sources=[
                        AttributionSource(name=name, version=version)
                        for name, version in view.attribution_sources
                    ]
                    if principal.can(Scope.PICTURE_DETAIL)
                    else None,
                )
                for view in list_nodes(session)
            ]
        )

    app.include_router(members_router(settings, clock))
    app.include_router(removals_router(settings, clock), dependencies=exact_only)
    app.include_router(discovery_router(settings, clock), dependencies=exact_only)  # issue 14
    app.include_router(coverage_router(settings, clock, write_lock), dependencies=exact_only)
    app.include_router(flows_router(settings, clock), dependencies=exact_only)
    app.include_router(invitations_router(clock))
    app.include_router(tlog_router(clock, signing_key, write_lock))
    app.include_router(psi_router(clock, write_lock))  # issue 15: PSI relay
    install_dashboard(app)

    @app.get("/healthz", response_model=Health, summary="Liveness and database reachability.")
    def healthz(session: SessionDep) -> Health:
        session.connection().execute(text("SELECT 1"))
        return Health(status="ok")

    # issue 8: Prometheus /metrics and server spans (coordinator/metrics.py, telemetry.py);
    # ``tracer_provider`` overrides the one settings.tracing makes (tests).
    if settings.metrics:
        metrics.install(app, metrics.CoordinatorMetrics(engine, clock))
    provider = tracer_provider or telemetry.provider_for(settings.tracing, settings.otlp_endpoint)
    telemetry.instrument_app(app, provider)
    return app
