"""The HTTP face of the function: ``POST /v1/analyze`` and ``GET /healthz``.

Every failure is a JSON ``{"error": {"code", "message"}}`` with a stable code; nothing ends as a
500 with a traceback. Logs carry a short hash of the URL, never the URL or any image bytes.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from protocol.lab import LabNetwork, load_lab
from protocol.models import AnalyzeRequest, ErrorBody, ErrorResponse, HashResult

from .errors import AnalysisFailed, FunctionError
from .fetch import Fetcher
from .hashing import DecodeLimits, hash_image
from .settings import FunctionSettings
from .ssrf import Guard, Resolver, system_resolver
from .urls import url_ref

log = logging.getLogger("worker_function")

LAB_WARNING = (
    "LAB MODE: loopback fetching enabled for the lab network in %s; host names resolve only "
    "through its static map. Never run a production function like this."
)


class Analyzer:
    """Fetch -> decode -> hash for one URL. Stateless apart from its configuration."""

    def __init__(
        self, fetcher: Fetcher, decode_limits: DecodeLimits, max_concurrent_decodes: int
    ) -> None:
        self.fetcher = fetcher
        self.decode_limits = decode_limits
        self._decodes = anyio.CapacityLimiter(max_concurrent_decodes)

    async def analyze(self, request: AnalyzeRequest) -> HashResult:
        fetched = await self.fetcher.fetch(request.url)
        work = functools.partial(
            hash_image, fetched.data, dihedral=request.dihedral, limits=self.decode_limits
        )
        # Decode in a worker thread so the event loop keeps serving other requests.
        digest = await anyio.to_thread.run_sync(work, limiter=self._decodes)
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
        )


def error_response(code: str, message: str, status: int) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message))
    return JSONResponse(body.model_dump(mode="json"), status_code=status)


def create_app(
    settings: FunctionSettings | None = None,
    *,
    lab: LabNetwork | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """Build the app. ``lab`` overrides ``settings.lab``; ``resolver`` replaces DNS (tests)."""
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
    fetcher = Fetcher(guard, settings.fetch_limits(), user_agent=settings.user_agent)
    analyzer = Analyzer(fetcher, settings.decode_limits(), settings.max_concurrent_decodes)

    app = FastAPI(
        title="LIBRA remote-hash function",
        description="Fetches one image URL into memory and returns its hashes. Keeps nothing.",
        version="0.1.0",
    )
    app.state.analyzer = analyzer
    app.state.lab_mode = lab is not None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/analyze",
        response_model=HashResult,
        responses={
            400: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            415: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            502: {"model": ErrorResponse},
            504: {"model": ErrorResponse},
        },
    )
    async def analyze(request: AnalyzeRequest) -> HashResult | JSONResponse:
        ref = url_ref(request.url)
        started = time.monotonic()
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

    _install_error_handlers(app)
    return app


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
        return error_response("invalid_request", _describe_validation(exc.errors()), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(code, str(exc.detail), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s outside analysis", type(exc).__name__)
        return error_response("analysis_failed", "internal failure", 502)


def _describe_validation(errors: Any) -> str:
    # Location and message only: pydantic's "input" would echo the request body into the reply.
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
