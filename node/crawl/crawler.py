"""The node's crawler: HTML pages within each seed's scope -> image URLs for the hash function.

It never reads an image body. A response that turns out to be an image (by Content-Type or by its
first bytes) is closed at once and reported as ``ImageFound``; the function fetches it.

Per-host queues own politeness (node/crawl/politeness.py): each host name has its own queue, worked
by at most ``per_host_concurrency`` tasks that respect the host's delay and back-off; a global
semaphore bounds all requests. The frontier (node/crawl/frontier/) holds the seen-set and what is
done, so a killed crawl resumes. Scope rules live in node/crawl/scope.py, sitemaps in
node/crawl/sitemaps.py.

Every page URL the crawler schedules ends in exactly one event: ``PageFetched``, ``PageFailed``
(with a stable reason code, docs/operations-crawler.md lists them) or ``ImageFound`` (unless that
image URL was already emitted). Use ``contextlib.aclosing`` when leaving ``crawl()`` early, so its
tasks are cancelled promptly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx

from node.crawl.content import (
    HTML_TYPES,
    SNIFF_BYTES,
    decode_html,
    looks_like_html,
    media_type,
    sniff_image,
)
from node.crawl.frontier import (
    REDIRECTED,
    Frontier,
    FrontierItem,
    ImageRecord,
    MemoryFrontier,
    Served,
)
from node.crawl.links import canonical_key, extract_links, normalize_url, url_host
from node.crawl.politeness import HostPolicy, Politeness, robots_delay
from node.crawl.robots import ALLOW_ALL, RobotsRules, fetch_robots
from node.crawl.scope import Scope, ScopeMode, ScopeRules
from node.crawl.sitemaps import MAX_SITEMAP_BYTES, SitemapError, parse_sitemap
from node.net import SERVER_IP, BlockedDestination

logger = logging.getLogger(__name__)

_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
# Failures worth another attempt (after the host's back-off): the host may recover.
_RETRYABLE = frozenset({"http_429", "http_503", "timeout", "connect_error", "network_error"})


@dataclass(frozen=True)
class CrawlLimits:
    max_pages: int = 2000  # page URLs attempted per crawl (all seeds together)
    max_pages_per_site: int = 0  # page URLs per seed site (0: only max_pages applies)
    max_depth: int = 6  # link hops from a seed (seeds are depth 0)
    concurrency: int = 8  # requests in flight, all hosts
    per_host_concurrency: int = 1  # requests in flight to one host name
    timeout_s: float = 15.0  # one request, headers and body
    max_html_bytes: int = 5_000_000  # decoded HTML read per page
    max_redirects: int = 5  # hops followed per page URL
    user_agent: str = "LIBRA-node/0.1 (+https://libra.invalid/bot)"
    obey_robots: bool = True
    robots_override_hosts: tuple[str, ...] = ()  # hosts whose robots.txt is ignored (audited)
    min_delay_s: float = 0.0  # between two requests to one host
    max_crawl_delay_s: float = 30.0  # cap on robots Crawl-delay / Request-rate
    backoff_base_s: float = 1.0
    max_backoff_s: float = 120.0
    slow_response_s: float = 5.0
    retries: int = 2  # extra attempts on 429/503/timeouts/connection errors
    scope: ScopeMode = "host"
    external_hops: int = 0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sitemaps: bool = True  # robots.txt Sitemap: lines as a source of page URLs
    videos: bool = True  # send video URLs to the function (issue 13); False: only count them

    def politeness(self) -> Politeness:
        return Politeness(
            per_host_concurrency=self.per_host_concurrency,
            min_delay_s=self.min_delay_s,
            max_crawl_delay_s=self.max_crawl_delay_s,
            backoff_base_s=self.backoff_base_s,
            max_backoff_s=self.max_backoff_s,
            slow_response_s=self.slow_response_s,
            retries=self.retries,
        )

    def scope_rules(self) -> ScopeRules:
        return ScopeRules(
            mode=self.scope,
            external_hops=self.external_hops,
            include=self.include,
            exclude=self.exclude,
        )


@dataclass(frozen=True)
class PageFetched:
    url: str  # the scheduled URL (a redirect's target is not re-emitted)
    host: str
    status: int
    depth: int
    # Issue 16: the address that served the page (after redirects) and that URL's host, so the
    # cycle attributes the page like a sighting; None when unknown (the unknown hoster).
    server_ip: str | None = None
    served_host: str | None = None


@dataclass(frozen=True)
class PageFailed:
    url: str
    host: str
    reason: str  # stable code: http_404, timeout, robots_disallowed, ...


@dataclass(frozen=True)
class ImageFound:
    url: str  # http(s) URL, or a data:image/... URI (the function decodes it)
    page_url: str  # the page it was found on (for a scheduled URL that was an image: its referrer)
    host: str
    # "video" for a video URL (issue 13: <video src>, <source>, og:video, links to video files):
    # the function sniffs the bytes either way; the node counts videos apart (CycleStats).
    media: str = "image"


CrawlEvent = PageFetched | PageFailed | ImageFound


@dataclass
class CrawlStats:
    """Counters of one crawl that are not events (updated live, final when crawl() ends)."""

    pages_scheduled: int = 0
    robots_fetched: int = 0
    skipped_budget: int = 0  # distinct in-scope URLs not scheduled: a page budget was reached
    # Of skipped_budget, those refused because max_pages itself was reached (the rest hit
    # max_pages_per_site): the pages a larger budget would have crawled, at least.
    skipped_max_pages: int = 0
    skipped_depth: int = 0  # distinct in-scope URLs beyond max_depth
    skipped_pattern: int = 0  # page links refused by include/exclude patterns
    offsite_links: int = 0  # page links out of scope (not followed; images are emitted)
    data_uris: int = 0  # data: URIs seen (data:image/... ones are emitted for the function)
    # Issue 13: video URLs and HLS/DASH manifests on fetched pages (per page, not de-duplicated
    # across pages). With CrawlLimits.videos each distinct one is also sent (ImageFound media
    # "video").
    video_links: int = 0
    manifest_links: int = 0
    sitemaps_fetched: int = 0
    sitemap_urls: int = 0  # page URLs taken from sitemaps (before de-duplication)
    retries: int = 0
    throttled: int = 0  # 429/503 answers
    robots_overridden: int = 0  # hosts crawled against their robots.txt by node policy
    resumed_pages: int = 0  # pages still queued from an interrupted run of the same seeds
    failures: dict[str, int] = field(default_factory=dict)  # reason -> pages
    # reason -> the first page URL that failed with it: the operator's lead to the cause.
    failure_examples: dict[str, str] = field(default_factory=dict)


# Outcomes of one HTTP request for a page.
@dataclass(frozen=True)
class _Body:
    status: int
    body: bytes
    content_type: str | None
    server_ip: str | None = None  # set by node.net.PinnedTransport


@dataclass(frozen=True)
class _Image:
    pass


@dataclass(frozen=True)
class _Redirect:
    location: str


@dataclass(frozen=True)
class _Fail:
    reason: str


_Outcome = _Body | _Image | _Redirect | _Fail


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(raw_path=b"", fragment=None)).rstrip("/")


def run_key(seeds: Sequence[str]) -> str:
    """Identifies a crawl over one seed list (a restart with the same seeds resumes it)."""
    canonical = sorted({canonical_key(s) for s in seeds})
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()[:32]


def seeds_run_key(seeds: Sequence[str]) -> str:
    """run_key of a configured seed list, as Crawler.crawl computes it (invalid seeds dropped)."""
    return run_key([u for s in seeds if (u := normalize_url(s)) is not None])


AuditHook = Callable[[str, str], None]  # (host, reason) when robots.txt is overridden


class Crawler:
    def __init__(
        self,
        client: httpx.AsyncClient,
        limits: CrawlLimits,
        *,
        frontier: Frontier | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        if limits.concurrency < 1 or limits.per_host_concurrency < 1:
            raise ValueError("concurrency limits must be at least 1")
        self._client = client
        self._limits = limits
        self._scope = Scope(limits.scope_rules())
        self._frontier = frontier or MemoryFrontier()
        self._audit = audit or _log_override
        self.stats = CrawlStats()

    def crawl(self, seeds: Sequence[str]) -> AsyncGenerator[CrawlEvent, None]:
        """Crawl from ``seeds`` and yield events as they happen (``stats`` is reset first).

        An async generator (so an ``AsyncIterator``): wrap it in ``contextlib.aclosing`` to stop
        early and cancel the work in flight.
        """
        self.stats = CrawlStats()
        run = Run(self._client, self._limits, self.stats, self._frontier, self._scope, self._audit)
        # The run's own generator is returned (not re-yielded) so that closing it cancels the run.
        return run.events(seeds)


def _log_override(host: str, reason: str) -> None:
    logger.warning("robots.txt of %s overridden by node policy (%s)", host, reason)


@dataclass
class _HostQueue:
    policy: HostPolicy
    items: deque[FrontierItem] = field(default_factory=deque)
    workers: int = 0


class Run:
    """State of one crawl: per-host queues, semaphores, robots cache; the frontier persists."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        limits: CrawlLimits,
        stats: CrawlStats,
        frontier: Frontier,
        scope: Scope,
        audit: AuditHook,
    ) -> None:
        self._client = client
        self._limits = limits
        self._stats = stats
        self._frontier = frontier
        self._scope = scope
        self._audit = audit
        self._politeness = limits.politeness()
        self._override = frozenset(h.lower() for h in limits.robots_override_hosts)
        self._headers = {"User-Agent": limits.user_agent, "Accept": _ACCEPT}
        self._queue: asyncio.Queue[CrawlEvent | None] = asyncio.Queue()
        self._images: set[str] = set()
        self._skipped: set[str] = set()
        self._redirected: set[str] = set()
        # Redirect targets per frontier key, stored with that key's outcome so that a resumed
        # run does not fetch them again.
        self._aliases: dict[str, list[str]] = {}
        self._global = asyncio.Semaphore(limits.concurrency)
        self._hosts: dict[str, _HostQueue] = {}
        self._robots: dict[str, RobotsRules] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._site_pages: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending = 0

    async def events(self, seeds: Sequence[str]) -> AsyncGenerator[CrawlEvent, None]:
        items: list[FrontierItem] = []
        for seed in seeds:
            url = normalize_url(seed)
            if url is None:
                yield PageFailed(url=seed, host="", reason="invalid_url")
                continue
            items.append(
                FrontierItem(url=url, depth=0, site=self._scope.site_of(url), referrer=url)
            )
        start = self._frontier.start(run_key([i.url for i in items]), items)
        self._site_pages = self._frontier.counts()
        self._stats.pages_scheduled = sum(self._site_pages.values())
        for item, outcome, served in self._frontier.resumed_outcomes():
            replayed = _replayed_event(item, outcome, served)
            if replayed is not None:
                yield replayed
        for image in self._frontier.resumed_images():
            self._images.add(image.url)
            yield ImageFound(
                url=image.url, page_url=image.page_url, host=image.host, media=image.media
            )
        for item in start:
            key = canonical_key(item.url)
            if self._frontier.seen(key):
                self._stats.resumed_pages += 1
                self._enqueue(item)
            elif self._frontier.add(key, item):
                self._count(item)
                self._enqueue(item)
        if not self._pending:
            self._frontier.finish()
            return
        finished = False
        try:
            while (event := await self._queue.get()) is not None:
                yield event
            finished = True
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if finished:
                self._frontier.finish()

    # ----------------------------------------------------------------- frontier

    def _count(self, item: FrontierItem) -> None:
        self._stats.pages_scheduled += 1
        self._site_pages[item.site] = self._site_pages.get(item.site, 0) + 1

    def _admit(
        self, url: str, depth: int, site: str, hops: int, referrer: str, batch: dict[str, int]
    ) -> tuple[str, FrontierItem] | None:
        """A link as a new frontier item, or None (seen, out of budget; counted in stats)."""
        key = canonical_key(url)
        if self._frontier.seen(key) or key in self._redirected or url in self._images:
            return None
        limits = self._limits
        planned = sum(batch.values())
        over_site = limits.max_pages_per_site and (
            self._site_pages.get(site, 0) + batch.get(site, 0) >= limits.max_pages_per_site
        )
        over_total = self._stats.pages_scheduled + planned >= limits.max_pages
        if depth > limits.max_depth or over_site or over_total:
            if key not in self._skipped:
                self._skipped.add(key)
                if depth > limits.max_depth:
                    self._stats.skipped_depth += 1
                else:
                    self._stats.skipped_budget += 1
                    self._stats.skipped_max_pages += bool(over_total)
            return None
        batch[site] = batch.get(site, 0) + 1
        return key, FrontierItem(url=url, depth=depth, site=site, hops=hops, referrer=referrer)

    def _enqueue(self, item: FrontierItem) -> None:
        host = url_host(item.url)
        queue = self._hosts.get(host)
        if queue is None:
            queue = self._hosts[host] = _HostQueue(HostPolicy(self._politeness))
        queue.items.append(item)
        self._pending += 1
        if queue.workers < self._limits.per_host_concurrency:
            queue.workers += 1
            task = asyncio.create_task(self._host_worker(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _host_worker(self, queue: _HostQueue) -> None:
        try:
            while queue.items:
                item = queue.items.popleft()
                await self._run_item(item, queue.policy)
        finally:
            queue.workers -= 1

    async def process(
        self, item: FrontierItem, policy: HostPolicy
    ) -> tuple[list[CrawlEvent], list[tuple[str, FrontierItem]], str]:
        """Fetch one item: its events, the new frontier items it found, its outcome code.

        Used by the in-process run below and by the Redis workers (node/crawl/worker.py).
        """
        new: list[tuple[str, FrontierItem]] = []
        try:
            if item.kind == "sitemap":
                events = await self._sitemap(item, policy, new)
            else:
                events = await self._visit(item, policy, new)
        except Exception:  # a bug must not end the crawl nor lose the URL
            logger.exception("crawler: internal error on %s", item.url)
            events = [PageFailed(url=item.url, host=url_host(item.url), reason="internal_error")]
            new = []
        outcome = "ok"
        for event in events:
            if isinstance(event, ImageFound) and event.url == item.url:
                outcome = "image"
            elif isinstance(event, PageFailed):
                outcome = event.reason
                self._stats.failures[event.reason] = self._stats.failures.get(event.reason, 0) + 1
                self._stats.failure_examples.setdefault(event.reason, event.url)
        if not events:
            outcome = "image"  # the URL was an image already emitted
        return events, new, outcome

    async def _run_item(self, item: FrontierItem, policy: HostPolicy) -> None:
        key = canonical_key(item.url)
        events, new, outcome = await self.process(item, policy)
        images = [
            ImageRecord(e.url, e.page_url, e.host, e.media)
            for e in events
            if isinstance(e, ImageFound)
        ]
        # One transaction: the outcome, the images and the new links (crash consistency).
        aliases = self._aliases.pop(key, [])
        # Who served the page, kept with its outcome so a resumed cycle attributes it again.
        served = next(
            (Served(e.server_ip, e.served_host) for e in events if isinstance(e, PageFetched)),
            None,
        )
        added = self._frontier.complete(key, outcome, new, images, aliases, served)
        for event in events:
            self._queue.put_nowait(event)
        for child in added:
            self._count(child)
            self._enqueue(child)
        self._pending -= 1
        if self._pending == 0:
            self._queue.put_nowait(None)

    def _image(self, url: str, page_url: str, media: str = "image") -> ImageFound | None:
        if url in self._images:
            return None
        self._images.add(url)
        host = url_host(page_url) if url[:5].lower() == "data:" else url_host(url)
        return ImageFound(url=url, page_url=page_url, host=host, media=media)

    # ----------------------------------------------------------------- one page

    async def _visit(
        self, item: FrontierItem, policy: HostPolicy, new: list[tuple[str, FrontierItem]]
    ) -> list[CrawlEvent]:
        current = item.url
        chain = {current}
        hops = 0
        while True:
            robots = await self._robots_for(current, policy, item, new)
            if robots.failure is not None:
                return [self._fail(item, robots.failure)]
            if not robots.allows(current):
                return [self._fail(item, "robots_disallowed")]
            outcome = await self._polite(current, policy)
            if isinstance(outcome, _Fail):
                return [self._fail(item, outcome.reason)]
            if isinstance(outcome, _Image):
                found = self._image(item.url, item.referrer)
                return [found] if found is not None else []
            if isinstance(outcome, _Body):
                return self._page(item, current, outcome, new)
            target = normalize_url(urljoin(current, outcome.location))
            if target is None:
                return [self._fail(item, "invalid_redirect")]
            if not self._scope.judge(target, item.site, item.hops).follow:
                return [self._fail(item, "redirect_offsite")]
            if target in chain or hops >= self._limits.max_redirects:
                return [self._fail(item, "too_many_redirects")]
            chain.add(target)
            alias = canonical_key(target)
            self._redirected.add(alias)  # handled here; not scheduled again
            self._aliases.setdefault(canonical_key(item.url), []).append(alias)
            if url_host(target) != url_host(current):
                policy = self.host_policy(url_host(target))
            current = target
            hops += 1

    def host_policy(self, host: str) -> HostPolicy:
        queue = self._hosts.get(host)
        if queue is None:
            queue = self._hosts[host] = _HostQueue(HostPolicy(self._politeness))
        return queue.policy

    def _fail(self, item: FrontierItem, reason: str) -> PageFailed:
        return PageFailed(url=item.url, host=url_host(item.url), reason=reason)

    def _page(
        self,
        item: FrontierItem,
        final_url: str,
        html: _Body,
        new: list[tuple[str, FrontierItem]],
    ) -> list[CrawlEvent]:
        kind = media_type(html.content_type)
        if kind and kind not in HTML_TYPES and not looks_like_html(html.body[:1024]):
            return [self._fail(item, "not_html")]
        links = extract_links(decode_html(html.body, html.content_type), final_url)
        self._stats.data_uris += links.data_uris
        self._stats.video_links += len(links.videos)
        self._stats.manifest_links += len(links.manifests)
        events: list[CrawlEvent] = [
            PageFetched(
                url=item.url,
                host=url_host(item.url),
                status=html.status,
                depth=item.depth,
                server_ip=html.server_ip,
                served_host=url_host(final_url),
            )
        ]
        for image_url in (*links.images, *links.data_images):
            found = self._image(image_url, final_url)
            if found is not None:
                events.append(found)
        for video_url in links.videos if self._limits.videos else ():
            found = self._image(video_url, final_url, "video")
            if found is not None:
                events.append(found)
        batch: dict[str, int] = {}
        for page_url in links.pages:
            verdict = self._scope.judge(page_url, item.site, item.hops)
            if not verdict.follow:
                if verdict.reason == "offsite":
                    self._stats.offsite_links += 1
                else:
                    self._stats.skipped_pattern += 1
                continue
            admitted = self._admit(
                page_url, item.depth + 1, item.site, verdict.hops, final_url, batch
            )
            if admitted is not None:
                new.append(admitted)
        return events

    async def _sitemap(
        self, item: FrontierItem, policy: HostPolicy, new: list[tuple[str, FrontierItem]]
    ) -> list[CrawlEvent]:
        """A sitemap or sitemap index: its URLs join the frontier; no event unless it fails."""
        robots = await self._robots_for(item.url, policy, item, new)
        if robots.failure is not None or not robots.allows(item.url):
            return [self._fail(item, robots.failure or "robots_disallowed")]
        outcome = await self._polite(item.url, policy, max_bytes=MAX_SITEMAP_BYTES, xml=True)
        if isinstance(outcome, _Fail):
            return [self._fail(item, f"sitemap_{outcome.reason}")]
        if not isinstance(outcome, _Body):
            return [self._fail(item, "sitemap_not_xml")]
        try:
            parsed = parse_sitemap(outcome.body)
        except SitemapError:
            return [self._fail(item, "sitemap_invalid")]
        self._stats.sitemaps_fetched += 1
        batch: dict[str, int] = {}
        for raw in parsed.sitemaps:
            url = normalize_url(urljoin(item.url, raw))
            if url is not None and self._scope.site_of(url) == item.site:
                key = canonical_key(url)
                if not self._frontier.seen(key):
                    new.append(
                        (key, FrontierItem(url, item.depth, item.site, 0, item.url, "sitemap"))
                    )
        for raw in parsed.pages:
            url = normalize_url(urljoin(item.url, raw))
            if url is None or self._scope.site_of(url) != item.site:
                continue
            if self._scope.patterns_allow(url):
                self._stats.skipped_pattern += 1
                continue
            self._stats.sitemap_urls += 1
            admitted = self._admit(url, item.depth + 1, item.site, 0, item.url, batch)
            if admitted is not None:
                new.append(admitted)
        return []

    # ----------------------------------------------------------------- requests

    async def _polite(
        self, url: str, policy: HostPolicy, *, max_bytes: int | None = None, xml: bool = False
    ) -> _Outcome:
        """One request under the host's politeness, retried with back-off and jitter."""
        attempt = 0
        while True:
            await policy.acquire()
            started = time.monotonic()
            status: int | None = None
            retry_after: str | None = None
            try:
                async with self._global:
                    outcome, status, retry_after = await self._request(url, max_bytes, xml)
            finally:
                policy.release(status, time.monotonic() - started, retry_after)
            if status in (429, 503):
                self._stats.throttled += 1
            if not (isinstance(outcome, _Fail) and outcome.reason in _RETRYABLE):
                return outcome
            if attempt >= self._politeness.retries:
                return outcome
            attempt += 1
            self._stats.retries += 1
            # Jitter keeps retries of many hosts from synchronising.
            await asyncio.sleep(random.uniform(0, 0.1 * attempt))  # noqa: S311

    async def _request(
        self, url: str, max_bytes: int | None, xml: bool
    ) -> tuple[_Outcome, int | None, str | None]:
        box: list[int | str | None] = [None, None]
        try:
            async with asyncio.timeout(self._limits.timeout_s):
                outcome = await self._fetch(url, box, max_bytes, xml)
        except BlockedDestination:
            outcome = _Fail("blocked_destination")
        except (httpx.TimeoutException, TimeoutError):
            outcome = _Fail("timeout")
        except httpx.ConnectError:
            outcome = _Fail("connect_error")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL):
            outcome = _Fail("invalid_url")
        except httpx.RequestError:
            outcome = _Fail("network_error")
        status = box[0] if isinstance(box[0], int) else None
        retry_after = box[1] if isinstance(box[1], str) else None
        return outcome, status, retry_after

    async def _fetch(
        self, url: str, box: list[int | str | None], max_bytes: int | None, xml: bool
    ) -> _Outcome:
        async with self._client.stream("GET", url, headers=self._headers) as response:
            status = response.status_code
            box[0] = status
            box[1] = response.headers.get("retry-after")
            if 300 <= status < 400 and status != 304:
                location = response.headers.get("location")
                return _Redirect(location) if location else _Fail(f"http_{status}")
            if not 200 <= status < 300:
                return _Fail(f"http_{status}")
            content_type = response.headers.get("content-type")
            kind = media_type(content_type)
            if kind.startswith("image/"):
                return _Image()  # leaving the block closes the stream unread
            return await self._read_body(response, kind, max_bytes, xml)

    async def _read_body(
        self, response: httpx.Response, kind: str, max_bytes: int | None, xml: bool
    ) -> _Outcome:
        """Sniff the first bytes, then read an HTML (or sitemap) body up to the limit.

        Returning early leaves the rest unread: the caller's ``stream`` block closes it.
        """
        limit = max_bytes or self._limits.max_html_bytes
        body = bytearray()
        judged = False
        async for chunk in response.aiter_bytes():
            body += chunk
            if not judged:
                if len(body) < SNIFF_BYTES:
                    continue
                verdict = self._judge(bytes(body[:1024]), kind, response, limit, xml)
                if verdict is not None:
                    return verdict
                judged = True
            if len(body) > limit:
                return _Fail("html_too_large")
        if not judged:
            verdict = self._judge(bytes(body), kind, response, limit, xml)
            if verdict is not None:
                return verdict
        if len(body) > limit:
            return _Fail("html_too_large")
        served_by = response.extensions.get(SERVER_IP)
        return _Body(
            status=response.status_code,
            body=bytes(body),
            content_type=response.headers.get("content-type"),
            server_ip=served_by if isinstance(served_by, str) else None,
        )

    def _judge(
        self, head: bytes, kind: str, response: httpx.Response, limit: int, xml: bool
    ) -> _Outcome | None:
        """Image, not HTML, or too large by its declared length; None: read on."""
        if sniff_image(head[:SNIFF_BYTES]):
            return _Image()
        if not xml and kind not in HTML_TYPES and not (not kind and looks_like_html(head)):
            return _Fail("not_html")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _Fail("html_too_large")
        return None

    async def _robots_for(
        self,
        url: str,
        policy: HostPolicy,
        item: FrontierItem,
        new: list[tuple[str, FrontierItem]],
    ) -> RobotsRules:
        if not self._limits.obey_robots:
            return ALLOW_ALL
        host = url_host(url)
        if host in self._override:
            if host not in self._robots:
                self._robots[host] = ALLOW_ALL
                self._stats.robots_overridden += 1
                self._audit(host, "crawl.robots_override_hosts")
            return ALLOW_ALL
        origin = _origin(url)
        rules = self._robots.get(origin)
        if rules is not None:
            return rules
        async with self._robots_locks.setdefault(origin, asyncio.Lock()):
            rules = self._robots.get(origin)
            if rules is None:
                # robots.txt is fetched before the first page, under the host's politeness.
                await policy.acquire()
                started = time.monotonic()
                try:
                    async with self._global:
                        rules = await fetch_robots(
                            self._client,
                            origin,
                            user_agent=self._limits.user_agent,
                            max_redirects=self._limits.max_redirects,
                            timeout_s=self._limits.timeout_s,
                        )
                    # Before release(): the gap after robots.txt already obeys its Crawl-delay.
                    policy.robots_delay_s = robots_delay(rules.parser, self._limits.user_agent)
                finally:
                    policy.release(200, time.monotonic() - started, None)
                self._robots[origin] = rules
                self._stats.robots_fetched += 1
                if self._limits.sitemaps:
                    self._sitemaps_of(rules, item, new)
        return rules

    def _sitemaps_of(
        self, rules: RobotsRules, item: FrontierItem, new: list[tuple[str, FrontierItem]]
    ) -> None:
        for raw in getattr(rules.parser, "sitemaps", ()) or ():
            url = normalize_url(str(raw))
            if url is None or self._scope.site_of(url) != item.site:
                continue
            key = canonical_key(url)
            if not self._frontier.seen(key) and all(k != key for k, _ in new):
                new.append((key, FrontierItem(url, item.depth, item.site, 0, item.url, "sitemap")))


def _replayed_event(
    item: FrontierItem, outcome: str, served: Served | None = None
) -> PageFetched | PageFailed | None:
    """The event a page finished before a restart produced, for the resumed cycle's counts.

    The frontier keeps outcomes, not HTTP statuses: a replayed fetched page reports 200, and
    who served it (so it is attributed as before). Image URLs are re-emitted through
    ``resumed_images``; sitemaps only ever produce failures.
    """
    host = url_host(item.url)
    if outcome in ("image", REDIRECTED):
        return None
    if outcome == "ok":
        if item.kind != "page":
            return None
        return PageFetched(
            url=item.url,
            host=host,
            status=200,
            depth=item.depth,
            server_ip=served.ip if served else None,
            served_host=served.host if served else None,
        )
    return PageFailed(url=item.url, host=host, reason=outcome)
