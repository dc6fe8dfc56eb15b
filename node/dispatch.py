"""Client of the remote-hash function: ``POST {base_url}/v1/analyze`` with bounded concurrency.

Retried (exponential back-off with full jitter): transport errors (the function is unreachable or
the connection broke), 429 (honouring ``Retry-After`` seconds) and 503 (the function is
overloaded). Everything else is final: an upstream 404, an image too large, a blocked destination
are answers about the image, and asking again would not change them.

The function's own address comes from configuration and may be loopback; the function does the
SSRF checks on the image URLs it fetches.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
from pydantic import ValidationError

from node import metrics as node_metrics
from node import telemetry
from protocol.keys import NodeKey
from protocol.models import AnalyzeRequest, ErrorResponse, HashResult
from protocol.request_auth import RequestSigner

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class AnalyzeFailure:
    url: str
    code: str  # the function's error code, or one of ours (function_unreachable, bad_response)
    message: str
    http_status: int | None  # None: no HTTP answer at all


def load_request_signer(caller: str, key_file: Path | None) -> RequestSigner | None:
    """The signer for ``NodeSettings.function_key_file`` (a base64 Ed25519 seed), if set."""
    if key_file is None:
        return None
    try:
        text = key_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read function_key_file {key_file}: {exc}") from None
    return RequestSigner(caller, NodeKey.from_seed_b64(text).signing_key)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the HTTP-date form is not used by the function)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _failure(url: str, response: httpx.Response) -> AnalyzeFailure:
    try:
        body = ErrorResponse.model_validate_json(response.content)
    except ValidationError:
        return AnalyzeFailure(
            url=url,
            code=f"http_{response.status_code}",
            message=response.text[:200],
            http_status=response.status_code,
        )
    return AnalyzeFailure(
        url=url,
        code=body.error.code,
        message=body.error.message,
        http_status=response.status_code,
    )


class FunctionClient:
    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int = 8,
        retries: int = 3,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        auth: RequestSigner | None = None,
    ) -> None:
        """``retries`` counts extra attempts; back-off before attempt n is uniform in
        [0, min(max_backoff_s, backoff_s * 2**n)], or exactly Retry-After when the function
        sent one (capped at max_backoff_s). ``auth`` signs every request (the function's
        authorized_keys must hold its public key)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._semaphore = asyncio.Semaphore(concurrency)
        self._auth = auth
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        telemetry.instrument_client(self._client)  # traceparent to the function only

    async def __aenter__(self) -> FunctionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff_s)
        ceiling = min(self._max_backoff_s, self._backoff_s * 2**attempt)
        return random.uniform(0, ceiling)  # noqa: S311 (jitter, not security)

    def _headers(self, content: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._auth is not None:
            # Signed per attempt: a fresh timestamp and nonce (the function refuses repeats).
            path = self._client.base_url.path.rstrip("/") + "/v1/analyze"
            headers.update(self._auth.headers("POST", path, content))
        return headers

    async def analyze(self, url: str, *, dihedral: bool = False) -> HashResult | AnalyzeFailure:
        """Hash one image URL through the function; never raises for remote failures."""
        # Issue 8: one span around the attempts, and the outcome counted (node/metrics.py).
        started = time.monotonic()
        with telemetry.span("libra.node.analyze"):
            result = await self._analyze(url, dihedral=dihedral)
        outcome = result.code if isinstance(result, AnalyzeFailure) else "ok"
        node_metrics.observe_analysis(outcome, time.monotonic() - started)
        return result

    async def _analyze(self, url: str, *, dihedral: bool) -> HashResult | AnalyzeFailure:
        try:
            body = AnalyzeRequest(url=url, dihedral=dihedral).model_dump(mode="json")
        except ValidationError as exc:
            return AnalyzeFailure(url, "invalid_url", str(exc.errors()[0]["msg"]), None)
        content = json.dumps(body, separators=(",", ":")).encode("utf-8")
        last = AnalyzeFailure(url, "function_unreachable", "no attempt made", None)
        retry_after: float | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                # Only the request holds a slot: back-off sleeps do not.
                async with self._semaphore:
                    response = await self._client.post(
                        "/v1/analyze", content=content, headers=self._headers(content)
                    )
            except httpx.TransportError as exc:
                last = AnalyzeFailure(
                    url, "function_unreachable", f"{type(exc).__name__}: {exc}", None
                )
                continue
            except httpx.RequestError as exc:  # e.g. an undecodable body: not transient
                return AnalyzeFailure(url, "bad_response", f"{type(exc).__name__}: {exc}", None)
            if response.status_code == 200:
                try:
                    return HashResult.model_validate_json(response.content)
                except ValidationError as exc:
                    return AnalyzeFailure(
                        url,
                        "bad_response",
                        f"function answered 200 with an invalid body: {exc.errors()[0]['msg']}",
                        200,
                    )
            last = _failure(url, response)
            if response.status_code not in RETRY_STATUSES:
                return last
            retry_after = _retry_after(response.headers.get("retry-after"))
        return last

    async def analyze_many(
        self, urls: Sequence[str], *, dihedral: bool = False
    ) -> AsyncGenerator[tuple[str, HashResult | AnalyzeFailure], None]:
        """Analyze every URL, yielding ``(url, result)`` in completion order.

        At most ``concurrency`` workers run, so a long list does not become a long list of tasks.
        """
        results: asyncio.Queue[tuple[str, HashResult | AnalyzeFailure]] = asyncio.Queue()
        pending = iter(urls)

        async def worker() -> None:
            for url in pending:  # one shared iterator: each URL is taken by one worker
                result: HashResult | AnalyzeFailure
                try:
                    result = await self.analyze(url, dihedral=dihedral)
                except Exception as exc:  # a bug must not hang the consumer nor lose the URL
                    logger.exception("dispatch: internal error")
                    result = AnalyzeFailure(url, "internal_error", repr(exc), None)
                await results.put((url, result))

        workers = [asyncio.create_task(worker()) for _ in range(min(self._concurrency, len(urls)))]
        try:
            for _ in range(len(urls)):
                yield await results.get()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
