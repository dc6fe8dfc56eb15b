"""Crawler pieces built from node settings: limits, the frontier backend, the audit hook."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine, make_url

from . import audit
from .config import NodeSettings
from .crawl_worker import RedisCrawler
from .crawler import AuditHook, Crawler, CrawlLimits
from .frontier import Frontier, MemoryFrontier
from .frontier.redis_streams import RedisFrontier
from .frontier.sqlite import SqliteFrontier

FRONTIER_FILE_NAME = "frontier.sqlite3"


def limits_from(settings: NodeSettings) -> CrawlLimits:
    c = settings.crawl
    return CrawlLimits(
        max_pages=c.max_pages,
        max_pages_per_site=c.max_pages_per_site,
        max_depth=c.max_depth,
        concurrency=c.concurrency,
        per_host_concurrency=c.per_host_concurrency,
        timeout_s=c.timeout_s,
        max_html_bytes=c.max_html_bytes,
        max_redirects=c.max_redirects,
        user_agent=c.user_agent,
        obey_robots=c.obey_robots,
        robots_override_hosts=tuple(c.robots_override_hosts),
        min_delay_s=c.min_delay_s,
        max_crawl_delay_s=c.max_crawl_delay_s,
        backoff_base_s=c.backoff_base_s,
        max_backoff_s=c.max_backoff_s,
        slow_response_s=c.slow_response_s,
        retries=c.retries,
        scope=c.scope,
        external_hops=c.external_hops,
        include=tuple(c.include),
        exclude=tuple(c.exclude),
        sitemaps=c.sitemaps,
    )


def frontier_path(settings: NodeSettings) -> Path:
    """The node's own SQLite file when it uses SQLite, else <data_dir>/frontier.sqlite3."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database)
    return settings.data_dir / FRONTIER_FILE_NAME


def open_frontier(settings: NodeSettings) -> Frontier:
    """The in-process frontier (``redis`` is used through node/crawl_worker.py instead)."""
    if settings.crawl.frontier in ("memory", "redis"):
        return MemoryFrontier()
    return SqliteFrontier(frontier_path(settings))


def audit_hook(engine: Engine) -> AuditHook:
    def record(host: str, reason: str) -> None:
        audit.log(
            engine,
            "crawl.robots_override",
            subject=f"host:{host}",
            reason=f"robots.txt ignored for this host by node policy ({reason})",
        )

    return record


def make_crawler(
    settings: NodeSettings, client: httpx.AsyncClient, frontier: Frontier, engine: Engine
) -> Crawler | RedisCrawler:
    """The in-process crawler on ``frontier``, or a Redis-frontier crawler (shared workers)."""
    limits = limits_from(settings)
    hook = audit_hook(engine)
    c = settings.crawl
    if c.frontier == "redis":
        redis = aioredis.Redis.from_url(c.redis_url)
        shared = RedisFrontier(redis, c.redis_prefix, lease_s=c.lease_s)
        return RedisCrawler(shared, client, limits, lease_s=c.lease_s, audit=hook, owns_redis=True)
    return Crawler(client, limits, frontier=frontier, audit=hook)
