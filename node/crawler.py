"""The node's crawler: HTML pages within each seed's site -> image URLs for the hash function.

It never reads an image body. A response that turns out to be an image (by Content-Type or by its
first bytes) is closed at once and reported as ``ImageFound``; the function fetches it.

Every page URL the crawler schedules ends in exactly one event: ``PageFetched``, ``PageFailed``
(with a stable reason code, docs/operations-crawler.md lists them) or ``ImageFound`` (unless that
image URL was already emitted). Use ``contextlib.aclosing`` when leaving ``crawl()`` early, so its
tasks are cancelled promptly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from .crawl_content import (
    HTML_TYPES,
    SNIFF_BYTES,
    decode_html,
    looks_like_html,
    media_type,
    sniff_image,
)
from .crawl_robots import ALLOW_ALL, RobotsRules, fetch_robots
from .links import extract_links, normalize_url, url_host
from .net import BlockedDestination

logger = logging.getLogger(__name__)

_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"


@dataclass(frozen=True)
class CrawlLimits:
    max_pages: int = 2000  # page URLs attempted per crawl (all seeds together)
    max_depth: int = 6  # link hops from a seed (seeds are depth 0)
    concurrency: int = 8  # requests in flight, all hosts
    per_host_concurrency: int = 2  # requests in flight to one host name
    timeout_s: float = 15.0  # one request, headers and body
    max_html_bytes: int = 5_000_000  # decoded HTML read per page
    max_redirects: int = 5  # hops followed per page URL
    user_agent: str = "LIBRA-node/0.1 (+https://libra.invalid/bot)"
    obey_robots: bool = True


@dataclass(frozen=True)
class PageFetched:
    url: str  # the scheduled URL (a redirect's target is not re-emitted)
    host: str
    status: int
    depth: int


@dataclass(frozen=True)
class PageFailed:
    url: str
    host: str
    reason: str  # stable code: http_404, timeout, robots_disallowed, ...


@dataclass(frozen=True)
class ImageFound:
    url: str
    page_url: str  # the page it was found on (for a scheduled URL that was an image: its referrer)
    host: str


CrawlEvent = PageFetched | PageFailed | ImageFound


@dataclass
class CrawlStats:
    """Counters of one crawl that are not events (updated live, final when crawl() ends)."""

    pages_scheduled: int = 0
    robots_fetched: int = 0
    skipped_budget: int = 0  # distinct in-scope URLs not scheduled: max_pages reached
    skipped_depth: int = 0  # distinct in-scope URLs beyond max_depth
    offsite_links: int = 0  # page links to another host (not followed; images are emitted)
    data_uris: int = 0  # data: image URIs seen (counted, not emitted)


@dataclass(frozen=True)
class _Item:
    url: str
    depth: int
    scope: str  # host name of the seed: pages are followed only on this host
    referrer: str


# Outcomes of one HTTP request for a page.
@dataclass(frozen=True)
class _Html:
    status: int
    body: bytes
    content_type: str | None


@dataclass(frozen=True)
class _Image:
    pass


@dataclass(frozen=True)
class _Redirect:
    location: str


@dataclass(frozen=True)
class _Fail:
    reason: str


_Outcome = _Html | _Image | _Redirect | _Fail


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(raw_path=b"", fragment=None)).rstrip("/")


class Crawler:
    def __init__(self, client: httpx.AsyncClient, limits: CrawlLimits) -> None:
        if limits.concurrency < 1 or limits.per_host_concurrency < 1:
            raise ValueError("concurrency limits must be at least 1")
        self._client = client
        self._limits = limits
        self.stats = CrawlStats()

    def crawl(self, seeds: Sequence[str]) -> AsyncGenerator[CrawlEvent, None]:
        """Crawl from ``seeds`` and yield events as they happen (``stats`` is reset first).

        An async generator (so an ``AsyncIterator``): wrap it in ``contextlib.aclosing`` to stop
        early and cancel the work in flight.
        """
        self.stats = CrawlStats()
        # The run's own generator is returned (not re-yielded) so that closing it cancels the run.
        return _Run(self._client, self._limits, self.stats).events(seeds)


class _Run:
    """State of one crawl: frontier, de-duplication, semaphores, robots cache."""

    def __init__(self, client: httpx.AsyncClient, limits: CrawlLimits, stats: CrawlStats) -> None:
        self._client = client
        self._limits = limits
        self._stats = stats
        self._headers = {"User-Agent": limits.user_agent, "Accept": _ACCEPT}
        self._queue: asyncio.Queue[CrawlEvent | None] = asyncio.Queue()
        self._pages: set[str] = set()
        self._images: set[str] = set()
        self._skipped: set[str] = set()
        self._global = asyncio.Semaphore(limits.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._robots: dict[str, RobotsRules] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0

    async def events(self, seeds: Sequence[str]) -> AsyncGenerator[CrawlEvent, None]:
        for seed in seeds:
            url = normalize_url(seed)
            if url is None:
                yield PageFailed(url=seed, host="", reason="invalid_url")
                continue
            self._schedule(_Item(url=url, depth=0, scope=url_host(url), referrer=url))
        if not self._pending:
            return
        try:
            while (event := await self._queue.get()) is not None:
                yield event
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ----------------------------------------------------------------- frontier

    def _schedule(self, item: _Item) -> None:
        if item.url in self._pages or item.url in self._images:
            return
        if item.depth > self._limits.max_depth or self._stats.pages_scheduled >= (
            self._limits.max_pages
        ):
            if item.url not in self._skipped:
                self._skipped.add(item.url)
                if item.depth > self._limits.max_depth:
                    self._stats.skipped_depth += 1
                else:
                    self._stats.skipped_budget += 1
            return
        self._pages.add(item.url)
        self._stats.pages_scheduled += 1
        self._pending += 1
        task = asyncio.create_task(self._run_item(item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_item(self, item: _Item) -> None:
        host = item.scope
        semaphore = self._hosts.setdefault(
            host, asyncio.Semaphore(self._limits.per_host_concurrency)
        )
        try:
            # Host first, then a global slot: a task waiting for a busy host holds no global slot.
            async with semaphore, self._global:
                events = await self._visit(item)
        except Exception:  # a bug must not end the crawl nor lose the URL
            logger.exception("crawler: internal error on %s", item.url)
            events = [PageFailed(url=item.url, host=host, reason="internal_error")]
        for event in events:
            self._queue.put_nowait(event)
        self._pending -= 1
        if self._pending == 0:
            self._queue.put_nowait(None)

    def _image(self, url: str, page_url: str) -> ImageFound | None:
        if url in self._images:
            return None
        self._images.add(url)
        return ImageFound(url=url, page_url=page_url, host=url_host(url))

    # ----------------------------------------------------------------- one page

    async def _visit(self, item: _Item) -> list[CrawlEvent]:
        current = item.url
        chain = {current}
        hops = 0
        while True:
            robots = await self._robots_for(current)
            if robots.failure is not None:
                return [self._fail(item, robots.failure)]
            if not robots.allows(current):
                return [self._fail(item, "robots_disallowed")]
            outcome = await self._request(current)
            if isinstance(outcome, _Fail):
                return [self._fail(item, outcome.reason)]
            if isinstance(outcome, _Image):
                found = self._image(item.url, item.referrer)
                return [found] if found is not None else []
            if isinstance(outcome, _Html):
                return self._page(item, current, outcome)
            target = normalize_url(urljoin(current, outcome.location))
            if target is None:
                return [self._fail(item, "invalid_redirect")]
            if url_host(target) != item.scope:
                return [self._fail(item, "redirect_offsite")]
            if target in chain or hops >= self._limits.max_redirects:
                return [self._fail(item, "too_many_redirects")]
            chain.add(target)
            self._pages.add(target)  # its content is handled here; do not schedule it again
            current = target
            hops += 1

    def _fail(self, item: _Item, reason: str) -> PageFailed:
        return PageFailed(url=item.url, host=url_host(item.url), reason=reason)

    def _page(self, item: _Item, final_url: str, html: _Html) -> list[CrawlEvent]:
        links = extract_links(decode_html(html.body, html.content_type), final_url)
        self._stats.data_uris += links.data_uris
        events: list[CrawlEvent] = [
            PageFetched(url=item.url, host=item.scope, status=html.status, depth=item.depth)
        ]
        for image_url in links.images:
            found = self._image(image_url, final_url)
            if found is not None:
                events.append(found)
        for page_url in links.pages:
            if url_host(page_url) != item.scope:
                self._stats.offsite_links += 1
                continue
            self._schedule(
                _Item(url=page_url, depth=item.depth + 1, scope=item.scope, referrer=final_url)
            )
        return events

    async def _request(self, url: str) -> _Outcome:
        try:
            async with asyncio.timeout(self._limits.timeout_s):
                return await self._fetch(url)
        except BlockedDestination:
            return _Fail("blocked_destination")
        except (httpx.TimeoutException, TimeoutError):
            return _Fail("timeout")
        except httpx.ConnectError:
            return _Fail("connect_error")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            return _Fail("invalid_url")
        except httpx.RequestError:
            return _Fail("network_error")

    async def _fetch(self, url: str) -> _Outcome:
        async with self._client.stream("GET", url, headers=self._headers) as response:
            status = response.status_code
            if 300 <= status < 400 and status != 304:
                location = response.headers.get("location")
                return _Redirect(location) if location else _Fail(f"http_{status}")
            if not 200 <= status < 300:
                return _Fail(f"http_{status}")
            content_type = response.headers.get("content-type")
            kind = media_type(content_type)
            if kind.startswith("image/"):
                return _Image()  # leaving the block closes the stream unread
            return await self._read_html(response, kind)

    async def _read_html(self, response: httpx.Response, kind: str) -> _Outcome:
        """Sniff the first bytes, then read an HTML body up to the limit.

        Returning early leaves the rest unread: the caller's ``stream`` block closes it.
        """
        limit = self._limits.max_html_bytes
        body = bytearray()
        judged = False
        async for chunk in response.aiter_bytes():
            body += chunk
            if not judged:
                if len(body) < SNIFF_BYTES:
                    continue
                verdict = self._judge(bytes(body[:1024]), kind, response)
                if verdict is not None:
                    return verdict
                judged = True
            if len(body) > limit:
                return _Fail("html_too_large")
        if not judged:
            verdict = self._judge(bytes(body), kind, response)
            if verdict is not None:
                return verdict
        if len(body) > limit:
            return _Fail("html_too_large")
        return _Html(
            status=response.status_code,
            body=bytes(body),
            content_type=response.headers.get("content-type"),
        )

    def _judge(self, head: bytes, kind: str, response: httpx.Response) -> _Outcome | None:
        """Image, not HTML, or too large by its declared length; None: read on."""
        if sniff_image(head[:SNIFF_BYTES]):
            return _Image()
        if kind not in HTML_TYPES and not (not kind and looks_like_html(head)):
            return _Fail("not_html")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limits.max_html_bytes:
            return _Fail("html_too_large")
        return None

    async def _robots_for(self, url: str) -> RobotsRules:
        if not self._limits.obey_robots:
            return ALLOW_ALL
        origin = _origin(url)
        rules = self._robots.get(origin)
        if rules is not None:
            return rules
        async with self._robots_locks.setdefault(origin, asyncio.Lock()):
            rules = self._robots.get(origin)
            if rules is None:
                rules = await fetch_robots(
                    self._client,
                    origin,
                    user_agent=self._limits.user_agent,
                    max_redirects=self._limits.max_redirects,
                    timeout_s=self._limits.timeout_s,
                )
                self._robots[origin] = rules
                self._stats.robots_fetched += 1
        return rules
