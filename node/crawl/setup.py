"""Crawler pieces built from node settings: limits, the frontier backend, the audit hook."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from node import audit
from node.config import NodeSettings
from node.crawl.crawler import AuditHook, Crawler
from node.crawl.frontier import Frontier, MemoryFrontier
from node.crawl.frontier.redis_streams import RedisFrontier
from node.crawl.frontier.sqlite import SqliteFrontier
from node.crawl.limits import frontier_path, limits_from
from node.crawl.worker import RedisCrawler


def open_frontier(settings: NodeSettings) -> Frontier:
    """The in-process frontier (``redis`` is used through node/crawl/worker.py instead)."""
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
