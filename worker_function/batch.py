"""``POST /v1/analyze:batch``: many URLs in one signed request (issue 17).

A node that sends one request per image pays a signature, a nonce, a connection and a JSON
round trip for images that take microseconds to hash. A batch pays them once. Each item is
analysed exactly as ``POST /v1/analyze`` would analyse it (the same fetch rules, byte and pixel
caps, isolated decoding and error codes) and answered in the request's order.

Bounds on one batch, besides the pre-authentication body limit (app.py):
- at most ``max_batch_items`` items, every URL distinct (a signed request never makes the
  function fetch one URL twice), each costing one rate-limit token;
- at most ``batch_concurrency`` items in progress at once;
- at most ``max_batch_bytes`` of image bytes brought in by all its items together: before its
  fetch an item reserves up to the per-item cap (``max_bytes``) from what is left, waiting while
  other items' reservations are open; an item that finds nothing left, or whose image is over
  the smaller share it got, is ``batch_too_large`` (the bytes of finished items count as spent).

The items of one batch fetch through one session (fetch.FetchSession): connections are kept
alive between items going to the same host name and checked IP, and all of them are closed when
the batch ends. A free slot goes first to an item of the host whose item just finished (its
connection is idle now), else to one of a host with nothing in progress, else to the next in
order (``HostSlots``): a page's image and its og:image then share one connection instead of
opening two at once, and a batch spread over many hosts asks each for one thing at a time.
No slot stays free while items wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError

from protocol.models import (
    AnalyzeBatchItem,
    AnalyzeBatchRequest,
    AnalyzeRequest,
    BatchItemError,
    HashResult,
)

from .errors import (
    AnalysisFailed,
    BatchTooLarge,
    DuplicateUrl,
    FunctionError,
    InvalidRequest,
    TooLarge,
    TooManyItems,
    describe_validation,
)
from .urls import url_ref

log = logging.getLogger("worker_function")

BATCH_PATH = "/v1/analyze:batch"


def parse_batch(body: bytes, max_items: int) -> AnalyzeBatchRequest:
    """The batch in ``body``, or InvalidRequest / TooManyItems / DuplicateUrl."""
    try:
        batch = AnalyzeBatchRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if any(
            e.get("type") == "too_long" and tuple(e.get("loc", ())) == ("items",) for e in errors
        ):
            raise TooManyItems(f"a batch has at most {max_items} items") from None
        raise InvalidRequest(describe_validation(errors)) from None
    if len(batch.items) > max_items:
        raise TooManyItems(f"a batch has at most {max_items} items, this one {len(batch.items)}")
    first: dict[str, int] = {}
    for index, item in enumerate(batch.items):
        seen = first.setdefault(item.url, index)
        if seen != index:
            # Positions only: the answer never echoes a URL back.
            raise DuplicateUrl(f"items {seen} and {index} name the same URL")
    return batch


class ByteBudget:
    """The image bytes one batch may still bring in, shared by its concurrent items."""

    def __init__(self, total: int, per_item: int) -> None:
        self.total = total
        self.per_item = per_item
        self.spent = 0
        self.reserved = 0
        self._changed = asyncio.Condition()

    async def reserve(self) -> int:
        """An item's cap: ``per_item`` when that much is left beside the open reservations,
        else (once no other is open) whatever is left, possibly 0."""
        async with self._changed:
            while self.reserved and self.total - self.spent - self.reserved < self.per_item:
                await self._changed.wait()
            share = max(0, min(self.per_item, self.total - self.spent - self.reserved))
            self.reserved += share
            return share

    async def settle(self, share: int, used: int) -> None:
        """Close a reservation; ``used`` bytes (at most ``share``) stay spent."""
        async with self._changed:
            self.reserved -= share
            self.spent += used
            self._changed.notify_all()


class HostSlots:
    """At most ``concurrency`` items of a batch in progress; which waiting item a free slot
    goes to (see the module docstring). Items are registered first (``wait``), then slots are
    handed out (``start``), so the first choice already sees the whole batch."""

    def __init__(self, concurrency: int) -> None:
        self.free = concurrency
        self.active: Counter[str] = Counter()  # items in progress per host
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []

    def wait(self, host: str) -> asyncio.Future[None]:
        """A future that is done when an item of ``host`` may start."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((host, turn))
        return turn

    def start(self, finished: str | None = None) -> None:
        """Hand free slots to waiting items, preferring ``finished``'s host, then idle hosts."""
        while self.free and self._waiting:
            host, turn = self._waiting.pop(self._pick(finished))
            finished = None  # its connection serves one item at a time
            if turn.done():  # cancelled: the batch is ending
                continue
            self.free -= 1
            self.active[host] += 1
            turn.set_result(None)

    def done(self, host: str) -> None:
        self.free += 1
        self.active[host] -= 1
        self.start(finished=host)

    def _pick(self, finished: str | None) -> int:
        if finished is not None:
            for index, (host, _turn) in enumerate(self._waiting):
                if host == finished:
                    return index
        for index, (host, _turn) in enumerate(self._waiting):
            if not self.active[host]:
                return index
        return 0


def host_of(url: str) -> str:
    """The scheme and authority a batch item's first fetch goes to ("" for data: URIs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.netloc else ""


class Source(Protocol):
    """A fetched or inline image (fetch.Fetched, datauri.InlineImage)."""

    @property
    def data(self) -> bytes: ...

    @property
    def final_url(self) -> str: ...

    @property
    def server_ip(self) -> str | None: ...


# An item's image under a byte cap, within the batch's fetch session.
Obtain = Callable[[AnalyzeRequest, int], Awaitable[Source]]


class ItemAnalyzer(Protocol):
    """What a batch needs of app.Analyzer: a session giving items' images under byte caps,
    then their hashes."""

    @property
    def max_bytes(self) -> int: ...

    def session(self, connections: int) -> AbstractAsyncContextManager[Obtain]: ...

    async def digest(self, request: AnalyzeRequest, fetched: Source) -> HashResult: ...


class BatchRunner:
    """Analyses the items of one batch with bounded concurrency and a shared byte budget."""

    def __init__(
        self,
        analyzer: ItemAnalyzer,
        *,
        concurrency: int,
        max_batch_bytes: int,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.concurrency = concurrency
        self.max_batch_bytes = max_batch_bytes
        self.count = count or (lambda _outcome: None)

    async def run(self, batch: AnalyzeBatchRequest) -> list[AnalyzeBatchItem]:
        started = time.monotonic()
        budget = ByteBudget(self.max_batch_bytes, self.analyzer.max_bytes)
        slots = HostSlots(self.concurrency)
        hosts = [host_of(item.url) for item in batch.items]
        turns = [slots.wait(host) for host in hosts]
        slots.start()
        # The session's clients are closed when the batch ends, also on error or cancellation.
        try:
            async with self.analyzer.session(self.concurrency) as obtain:
                results = await asyncio.gather(
                    *(
                        self._slotted(item, obtain, budget, slots, host, turn)
                        for item, host, turn in zip(batch.items, hosts, turns, strict=True)
                    )
                )
        finally:
            for turn in turns:
                turn.cancel()
        outcomes = Counter(r.error.code if r.error else "ok" for r in results)
        log.info(
            "analyze:batch %d items -> %s in %.0f ms",
            len(results),
            ", ".join(f"{code} {n}" for code, n in sorted(outcomes.items())),
            (time.monotonic() - started) * 1000,
        )
        return results

    async def _slotted(
        self,
        item: AnalyzeRequest,
        obtain: Obtain,
        budget: ByteBudget,
        slots: HostSlots,
        host: str,
        turn: asyncio.Future[None],
    ) -> AnalyzeBatchItem:
        await turn
        try:
            return await self._item(item, obtain, budget)
        finally:
            slots.done(host)

    async def _item(
        self, item: AnalyzeRequest, obtain: Obtain, budget: ByteBudget
    ) -> AnalyzeBatchItem:
        started = time.monotonic()
        share = await budget.reserve()
        used = 0
        try:
            if share == 0:
                raise BatchTooLarge(f"the batch already brought in its {budget.total} bytes")
            fetched = await obtain(item, share)
            used = len(fetched.data)
            result = await self.analyzer.digest(item, fetched)
        except TooLarge as exc:
            failure: FunctionError = exc
            if share < budget.per_item:  # over its share of the batch, not over the cap
                failure = BatchTooLarge(
                    f"the image is over the {share} bytes left of the batch's {budget.total}"
                )
            return self._failed(item, failure, started)
        except FunctionError as exc:
            return self._failed(item, exc, started)
        except Exception as exc:
            # Only the exception type is logged: messages of unexpected errors are not vetted.
            log.exception(
                "analyze %s failed unexpectedly (%s)", url_ref(item.url), type(exc).__name__
            )
            failure = AnalysisFailed(f"analysis failed unexpectedly ({type(exc).__name__})")
            return self._failed(item, failure, started)
        finally:
            await budget.settle(share, used)
        self.count("ok")
        log.debug(
            "analyze %s -> ok %s %dx%d %d bytes in %.0f ms (batch)",
            url_ref(item.url),
            result.format,
            result.width,
            result.height,
            result.bytes,
            (time.monotonic() - started) * 1000,
        )
        return AnalyzeBatchItem(url=item.url, result=result)

    def _failed(self, item: AnalyzeRequest, exc: FunctionError, started: float) -> AnalyzeBatchItem:
        self.count(exc.code)
        log.debug(
            "analyze %s -> %s in %.0f ms (batch)",
            url_ref(item.url),
            exc.code,
            (time.monotonic() - started) * 1000,
        )
        error = BatchItemError(code=exc.code, message=exc.message, http_status=exc.http_status)
        return AnalyzeBatchItem(url=item.url, error=error)
