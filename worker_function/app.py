"""The HTTP face of the function: ``POST /v1/analyze``, ``POST /v1/analyze:batch`` (many URLs
per signed request, worker_function/batch.py) and ``GET /healthz``.

Every failure is a JSON ``{"error": {"code", "message"}}`` with a stable code; nothing ends as a
500 with a traceback. Logs carry a short hash of the URL, never the URL or any image bytes.
Order of checks on /v1/analyze: signature headers present (401) -> declared Content-Length
(413) -> body read up to ``max_request_bytes`` (413) -> signature and nonce (401/403) ->
per-caller rate (429) -> admission (503) -> fetch -> isolated decode. Nothing beyond the small
pre-authentication limit is ever read from an unauthenticated caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from protocol.lab import LabNetwork, load_lab
from protocol.models import (
    AnalyzeBatchRequest,
    AnalyzeBatchResponse,
    AnalyzeRequest,
    ErrorBody,
    ErrorResponse,
    HashResult,
)

from . import metrics, telemetry
from .auth import (
    Authenticator,
    RateLimited,
    RateLimiter,
    parse_authorized_keys,
    require_signature_headers,
)
from .batch import BATCH_PATH, BatchRunner, Obtain, Source, parse_batch
from .datauri import obtain
from .errors import AnalysisFailed, FunctionError, RequestTooLarge, describe_validation
from .fetch import Fetcher
from .hashing import ImageDigest
from .isolation import DecodePool
from .settings import FunctionSettings
from .ssrf import Guard, Resolver, system_resolver
from .urls import url_ref
from .video.pool import VideoPool
from .video.sniff import sniff_video

log = logging.getLogger("worker_function")

LAB_WARNING = (
    "LAB MODE: loopback fetching enabled for the lab network in %s; host names resolve only "
    "through its static map. Never run a production function like this."
)


UNAUTHENTICATED_WARNING = (
    "AUTHENTICATION OFF: any caller that can reach this function may use it (%s). "
    "Configure authorized_keys."
)


class AuthConfigError(ValueError):
    """Production settings without authorized_keys: the function would be an open proxy."""


class Overloaded(FunctionError):
    code = "overloaded"
    http_status = 503


class Analyzer:
    """Fetch -> decode -> hash for one URL. Stateless apart from its configuration."""

    def __init__(
        self, fetcher: Fetcher, decoder: DecodePool, video: VideoPool | None = None
    ) -> None:
        self.fetcher = fetcher
        self.decoder = decoder
        self.video = video  # None: videos are not hashed (answered not_an_image)

    @property
    def max_bytes(self) -> int:
        return self.fetcher.limits.max_bytes

    async def analyze(self, request: AnalyzeRequest) -> HashResult:
        return await self.digest(request, await self.obtain(request, self.max_bytes))

    async def obtain(self, request: AnalyzeRequest, max_bytes: int) -> Source:
        """The image of ``request.url`` under a byte cap (a batch item's share may be lower)."""
        # data: URIs carry the image inline (worker_function/datauri.py); others are fetched.
        return await obtain(self.fetcher.capped(max_bytes), request.url, max_bytes=max_bytes)

    @asynccontextmanager
    async def session(self, connections: int) -> AsyncIterator[Obtain]:
        """``obtain`` for the items of one batch: their fetches share keep-alive connections
        per host name and checked IP (fetch.FetchSession), all closed when the batch ends."""
        async with self.fetcher.session(connections) as session:

            async def obtain_in_session(request: AnalyzeRequest, max_bytes: int) -> Source:
                fetcher = session.fetcher(max_bytes)
                return await obtain(fetcher, request.url, max_bytes=max_bytes)

            yield obtain_in_session

    async def digest(self, request: AnalyzeRequest, fetched: Source) -> HashResult:
        # Decoding runs in an isolated worker so a hostile image costs only this request.
        video = None
        digest: ImageDigest
        if self.video is not None and sniff_video(fetched.data) is not None:
            # Issue 13: videos go to their own isolated pool (worker_function/video/).
            clip = await self.video.hash(fetched.data)
            digest, video = clip, clip.video
        else:
            digest = await self.decoder.hash(fetched.data, dihedral=request.dihedral)
        return HashResult(
            url=request.url,
            final_url=fetched.final_url,
            server_ip=fetched.server_ip,
            format=digest.format,
            width=digest.width,
            height=digest.height,
            bytes=len(fetched.data),
            animated=digest.animated,
            hashes=digest.hashes,
            video=video,
        )


class Admission:
    """Counts analyses in progress; beyond ``limit`` callers get 503 + Retry-After at once,
    rather than queueing until their own client times out."""

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.in_flight = 0

    def enter(self, cost: int = 1) -> None:
        """Admit ``cost`` analyses at once (a batch: as many as it runs concurrently)."""
        if self.in_flight + cost > self.limit:
            raise Overloaded(f"the function is busy ({self.in_flight} analyses in progress)")
        self.in_flight += cost  # single event loop: no lock needed

    def leave(self, cost: int = 1) -> None:
        self.in_flight -= cost


def error_response(
    code: str, message: str, status: int, retry_after: int | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'LIBRA-Ed25519 realm="libra-function"'}
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _authenticator(settings: FunctionSettings, lab: LabNetwork | None) -> Authenticator | None:
    if settings.authorized_keys:
        keys = parse_authorized_keys(settings.authorized_keys)
        return Authenticator(
            keys,
            max_skew_seconds=settings.auth_max_skew_seconds,
            max_nonces=settings.auth_max_nonces,
        )
    if settings.require_auth and lab is None:
        raise AuthConfigError(
            "no authorized_keys configured: an unauthenticated function is an open proxy "
            "(set authorized_keys, or require_auth = false to accept that)"
        )
    log.warning(UNAUTHENTICATED_WARNING, "lab mode" if lab is not None else "require_auth=false")
    return None


def create_app(
    settings: FunctionSettings | None = None,
    *,
    lab: LabNetwork | None = None,
    resolver: Resolver | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app. ``lab`` overrides ``settings.lab``; ``resolver`` replaces DNS (tests);
    ``tracer_provider`` overrides the one ``settings.tracing`` makes (tests)."""
    settings = settings or FunctionSettings()
    logging.getLogger("worker_function").setLevel(settings.log_level.upper())
    # httpx logs every request line (with the full URL) at INFO: keep its chatter out.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if lab is None and settings.lab is not None:
        lab = load_lab(settings.lab)
    if lab is not None:
        log.warning(LAB_WARNING, settings.lab or "<in-memory lab>")
    guard = Guard(
        lab=lab,
        extra_ports=frozenset(settings.extra_ports),
        resolver=resolver or system_resolver,
    )
    authenticator = _authenticator(settings, lab)
    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    admission = Admission(settings.max_in_flight, settings.overload_retry_after_seconds)
    fetcher = Fetcher(guard, settings.fetch_limits(), user_agent=settings.user_agent)
    decoder = DecodePool(
        settings.max_concurrent_decodes,
        settings.decode_limits(),
        settings.worker_limits(),
        settings.decode_isolation,
    )
    video = VideoPool(settings.video, settings.decode_isolation) if settings.video.enabled else None
    analyzer = Analyzer(fetcher, decoder, video)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        decoder.warm_up()
        if video is not None:
            video.warm_up()  # as the image decoders: IPC made at start-up, before any request
        try:
            yield
        finally:
            decoder.close()
            if video is not None:
                video.close()

    lab_mode = lab is not None
    # Closed in production unless configured: the schema and docs describe nothing a caller
    # needs, and /metrics shows load and outcome counts (operations-function.md, Exposure).
    api_docs = settings.api_docs_enabled(lab_mode)
    app = FastAPI(
        title="LIBRA remote-hash function",
        description="Fetches image URLs into memory and returns their hashes. Keeps nothing.",
        version="0.2.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if api_docs else None,
        docs_url="/docs" if api_docs else None,
        redoc_url="/redoc" if api_docs else None,
    )
    app.state.analyzer = analyzer
    app.state.decoder = decoder
    app.state.admission = admission
    app.state.lab_mode = lab_mode
    app.state.authenticated = authenticator is not None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/analyze",
        response_model=HashResult,
        responses={
            status: {"model": ErrorResponse}
            for status in (400, 401, 403, 413, 415, 422, 429, 502, 503, 504)
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": AnalyzeRequest.model_json_schema()}},
            }
        },
    )
    async def analyze(http_request: Request) -> HashResult | JSONResponse:
        started = time.monotonic()
        try:
            if authenticator is not None:
                require_signature_headers(http_request.headers)
            body = await read_body(http_request, settings.max_request_bytes)
            caller = _caller(http_request, body, authenticator)
            limiter.take(caller)
            admission.enter()
        except RateLimited as exc:
            log.info("analyze refused: %s for %s", exc.code, caller)
            return error_response(exc.code, exc.message, exc.http_status, exc.retry_after)
        except Overloaded as exc:
            log.info("analyze refused: overloaded (%d in flight)", admission.in_flight)
            return error_response(exc.code, exc.message, exc.http_status, admission.retry_after)
        except FunctionError as exc:
            log.info("analyze refused: %s", exc.code)
            retry_after: int | None = getattr(exc, "retry_after", None)
            return error_response(exc.code, exc.message, exc.http_status, retry_after)
        try:
            return await _analyze_body(analyzer, body, started)
        finally:
            admission.leave()

    # Issue 8: Prometheus /metrics and server spans (worker_function/metrics.py, telemetry.py).
    function_metrics = (
        metrics.FunctionMetrics(in_flight=lambda: admission.in_flight)
        if settings.metrics_enabled(lab_mode)
        else None
    )
    runner = BatchRunner(
        analyzer,
        concurrency=settings.batch_concurrency,
        max_batch_bytes=settings.max_batch_bytes,
        count=function_metrics.count_analysis if function_metrics is not None else None,
    )

    @app.post(
        BATCH_PATH,
        response_model=AnalyzeBatchResponse,
        responses={
            status: {"model": ErrorResponse} for status in (401, 403, 413, 422, 429, 502, 503)
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": AnalyzeBatchRequest.model_json_schema()}
                },
            }
        },
    )
    async def analyze_batch(http_request: Request) -> AnalyzeBatchResponse | JSONResponse:
        """Many URLs in one signed request (worker_function/batch.py); the same checks in the
        same order as /v1/analyze, with the batch's own body limit, and one rate-limit token
        per item."""
        caller = "unknown"
        cost = 0
        try:
            if authenticator is not None:
                require_signature_headers(http_request.headers)
            body = await read_body(http_request, settings.batch_request_bytes())
            caller = _caller(http_request, body, authenticator)
            batch = parse_batch(body, settings.batch_items_limit())
            limiter.take(caller, len(batch.items))
            # At most batch_concurrency of its items run at once: that many analyses in flight.
            admission.enter(min(len(batch.items), settings.batch_concurrency))
            cost = min(len(batch.items), settings.batch_concurrency)  # entered: leave it later
        except RateLimited as exc:
            log.info("analyze:batch refused: %s for %s", exc.code, caller)
            return error_response(exc.code, exc.message, exc.http_status, exc.retry_after)
        except Overloaded as exc:
            log.info("analyze:batch refused: overloaded (%d in flight)", admission.in_flight)
            return error_response(exc.code, exc.message, exc.http_status, admission.retry_after)
        except FunctionError as exc:
            log.info("analyze:batch refused: %s", exc.code)
            retry_after: int | None = getattr(exc, "retry_after", None)
            return error_response(exc.code, exc.message, exc.http_status, retry_after)
        try:
            return AnalyzeBatchResponse(results=await runner.run(batch))
        finally:
            admission.leave(cost)

    _install_error_handlers(app)
    if function_metrics is not None:
        metrics.install(app, function_metrics)
    provider = tracer_provider or telemetry.provider_for(settings.tracing, settings.otlp_endpoint)
    telemetry.instrument_app(app, provider)
    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read from the stream and refused (413) as soon as it exceeds ``limit``:
    a declared Content-Length over it is refused before a byte is read."""
    declared = request.headers.get("content-length") or ""
    # ASCII digits only ("²".isdigit() is true), and long numbers are large without int().
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise RequestTooLarge(f"request body of {declared[:24]} bytes exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestTooLarge(f"request body exceeds {limit} bytes")
    return bytes(body)


def _caller(request: Request, body: bytes, authenticator: Authenticator | None) -> str:
    if authenticator is None:
        # Without authentication the rate limit is per client address.
        return "addr:" + (request.client.host if request.client else "unknown")
    return authenticator.verify(request.method, request.url.path, request.headers, body)


async def _analyze_body(
    analyzer: Analyzer, body: bytes, started: float
) -> HashResult | JSONResponse:
    try:
        request = AnalyzeRequest.model_validate_json(body)
    except ValidationError as exc:
        return error_response("invalid_request", describe_validation(exc.errors()), 422)
    ref = url_ref(request.url)
    try:
        result = await analyzer.analyze(request)
    except FunctionError as exc:
        _log_outcome(ref, exc.code, started)
        return error_response(exc.code, exc.message, exc.http_status)
    except Exception as exc:
        # Only the exception type is logged: messages of unexpected errors are not vetted.
        log.exception("analyze %s failed unexpectedly (%s)", ref, type(exc).__name__)
        failure = AnalysisFailed(f"analysis failed unexpectedly ({type(exc).__name__})")
        return error_response(failure.code, failure.message, failure.http_status)
    _log_outcome(ref, "ok", started, result)
    return result


def _log_outcome(ref: str, outcome: str, started: float, result: HashResult | None = None) -> None:
    elapsed_ms = (time.monotonic() - started) * 1000
    if result is None:
        log.info("analyze %s -> %s in %.0f ms", ref, outcome, elapsed_ms)
    else:
        log.info(
            "analyze %s -> ok %s %dx%d %d bytes in %.0f ms",
            ref,
            result.format,
            result.width,
            result.height,
            result.bytes,
            elapsed_ms,
        )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response("invalid_request", describe_validation(exc.errors()), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(code, str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s outside analysis", type(exc).__name__)
        return error_response("analysis_failed", "internal failure", 502)
