"""Client of the remote-hash function: ``POST {base_url}/v1/analyze`` with bounded concurrency,
and ``POST /v1/analyze:batch`` for many URLs in one signed request (issue 17: one signature,
one JSON document and one HTTP exchange per batch instead of per image).

Retried (exponential back-off with full jitter): transport errors (the function is unreachable or
the connection broke), 429 (honouring ``Retry-After`` seconds) and 503 (the function is
overloaded). Everything else is final: an upstream 404, an image too large, a blocked destination
are answers about the image, and asking again would not change them.

The function's own address comes from configuration and may be loopback; the function does the
SSRF checks on the image URLs it fetches.

A batch is retried as a whole on the same transient answers; an item's own error is final for
that item, as a single request's would be. A function that does not know the batch route
(404 or 405: an older version) is asked one URL at a time from then on.
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
from protocol.models import (
    AnalyzeBatchRequest,
    AnalyzeBatchResponse,
    AnalyzeRequest,
    ErrorResponse,
    HashResult,
)
from protocol.request_auth import RequestSigner

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})
# The function's default max_batch_items is 64; a node asks for at most this many per batch.
DEFAULT_BATCH_SIZE = 32
# Answers from a function without the batch route.
NO_BATCH_ROUTE = frozenset({404, 405})
BATCH_ROUTE = "/v1/analyze:batch"


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


def _code(response: httpx.Response) -> str | None:
    try:
        return ErrorResponse.model_validate_json(response.content).error.code
    except ValidationError:
        return None


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
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """``retries`` counts extra attempts; back-off before attempt n is uniform in
        [0, min(max_backoff_s, backoff_s * 2**n)], or exactly Retry-After when the function
        sent one (capped at max_backoff_s). ``auth`` signs every request (the function's
        authorized_keys must hold its public key). ``batch_size``: most URLs per
        ``analyze_batch`` request (1: never batch)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._concurrency = concurrency
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._semaphore = asyncio.Semaphore(concurrency)
        # A batch takes up to 16 of the function's 64 analysis slots (its batch_concurrency and
        # max_in_flight defaults): half the calls in flight as batches keeps within them, where
        # all 8 would be answered 503 overloaded (measured: 5 % of images lost that way).
        self._batch_slots = asyncio.Semaphore(max(1, concurrency // 2))
        self._auth = auth
        self._batches = batch_size > 1  # until the function says it has no batch route
        self._batch_size = max(1, batch_size)
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

    def _headers(self, content: bytes, route: str = "/v1/analyze") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._auth is not None:
            # Signed per attempt: a fresh timestamp and nonce (the function refuses repeats).
            path = self._client.base_url.path.rstrip("/") + route
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

    async def analyze_batch(
        self, urls: Sequence[str], *, dihedral: bool = False
    ) -> list[HashResult | AnalyzeFailure]:
        """Hash several image URLs in one request per ``batch_size`` of them; answers in the
        order of ``urls``. Never raises for remote failures."""
        if len(urls) <= 1 or not self._batches or len(set(urls)) != len(urls):
            return [await self.analyze(url, dihedral=dihedral) for url in urls]
        size = self._batch_size  # fixed for this call (a refusal may lower it for the next)
        if len(urls) > size:
            out: list[HashResult | AnalyzeFailure] = []
            for start in range(0, len(urls), size):
                out += await self.analyze_batch(urls[start : start + size], dihedral=dihedral)
            return out
        started = time.monotonic()
        with telemetry.span("libra.node.analyze_batch"):
            results = await self._analyze_batch(urls, dihedral=dihedral)
        if results is None:
            return await self.analyze_batch(urls, dihedral=dihedral)  # the limits changed
        per_item = (time.monotonic() - started) / len(urls)
        for result in results:
            outcome = result.code if isinstance(result, AnalyzeFailure) else "ok"
            node_metrics.observe_analysis(outcome, per_item)
        return results

    async def _analyze_batch(
        self, urls: Sequence[str], *, dihedral: bool
    ) -> list[HashResult | AnalyzeFailure] | None:
        try:
            request = AnalyzeBatchRequest(
                items=[AnalyzeRequest(url=url, dihedral=dihedral) for url in urls]
            )
        except ValidationError:  # one bad URL: let the single path name it, item by item
            return [await self._analyze(url, dihedral=dihedral) for url in urls]
        content = json.dumps(request.model_dump(mode="json"), separators=(",", ":")).encode()
        last: AnalyzeFailure = AnalyzeFailure("", "function_unreachable", "no attempt made", None)
        retry_after: float | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                async with self._batch_slots, self._semaphore:
                    response = await self._client.post(
                        BATCH_ROUTE,
                        content=content,
                        headers=self._headers(content, BATCH_ROUTE),
                    )
            except httpx.TransportError as exc:
                last = AnalyzeFailure(
                    "", "function_unreachable", f"{type(exc).__name__}: {exc}", None
                )
                continue
            except httpx.RequestError as exc:
                last = AnalyzeFailure("", "bad_response", f"{type(exc).__name__}: {exc}", None)
                break
            if response.status_code in NO_BATCH_ROUTE:
                logger.warning("the function has no batch route: one request per image")
                self._batches = False
                return None
            if response.status_code == 413 and _code(response) == "too_many_items":
                # The function takes fewer per batch than asked: halve, and remember.
                self._batch_size = max(1, len(urls) // 2)
                if self._batch_size == 1:
                    self._batches = False
                return None
            if response.status_code == 200:
                return self._batch_results(urls, response.content)
            last = _failure("", response)
            if response.status_code not in RETRY_STATUSES:
                break
            retry_after = _retry_after(response.headers.get("retry-after"))
        # The whole batch failed the same way: every URL gets that answer.
        return [AnalyzeFailure(url, last.code, last.message, last.http_status) for url in urls]

    @staticmethod
    def _batch_results(urls: Sequence[str], body: bytes) -> list[HashResult | AnalyzeFailure]:
        try:
            answer = AnalyzeBatchResponse.model_validate_json(body)
        except ValidationError as exc:
            message = f"function answered 200 with an invalid body: {exc.errors()[0]['msg']}"
            return [AnalyzeFailure(url, "bad_response", message, 200) for url in urls]
        if [item.url for item in answer.results] != list(urls):
            message = "function answered a batch with other URLs or in another order"
            return [AnalyzeFailure(url, "bad_response", message, 200) for url in urls]
        out: list[HashResult | AnalyzeFailure] = []
        for item in answer.results:
            if item.result is not None:
                out.append(item.result)
            else:
                assert item.error is not None  # the model allows exactly one of the two
                out.append(
                    AnalyzeFailure(
                        item.url, item.error.code, item.error.message, item.error.http_status
                    )
                )
        return out

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
