"""Crawler pieces built from node settings: limits, the frontier backend, the audit hook, and
why the node's own network policy refuses a URL (so a crawl-setup mistake is named, not silent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from node import audit
from node.config import NodeSettings, lab_of
from node.crawl.crawler import AuditHook, Crawler
from node.crawl.frontier import Frontier, MemoryFrontier
from node.crawl.frontier.redis_streams import RedisFrontier
from node.crawl.frontier.sqlite import SqliteFrontier
from node.crawl.limits import frontier_path, limits_from
from node.crawl.worker import RedisCrawler
from node.net import DEFAULT_PORTS, BlockedDestination, lab_resolver


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


def destination_problems(settings: NodeSettings, urls: Iterable[str]) -> dict[str, str]:
    """URL -> why the lab refuses it (port not in ``allow_ports``, host not in the lab map,
    address outside its ranges), for the URLs the lab refuses.

    The crawler records such pages as ``blocked_destination`` only; this names the cause. It
    applies the same check as the crawler's client (node.net.lab_resolver) and resolves through
    the lab map only, so it never touches the network. Outside lab mode it says nothing: there
    the check needs DNS, and the failures' counts already show it. Call it outside an event
    loop (it runs the async resolver to completion).
    """
    lab = lab_of(settings)
    if lab is None:
        return {}
    resolve = lab_resolver(lab)
    where = f" (lab file {settings.lab})"

    async def check() -> dict[str, str]:
        problems: dict[str, str] = {}
        for url in urls:
            try:
                parsed = httpx.URL(url)
                if parsed.scheme != "http":  # the lab's client speaks plain http only
                    raise BlockedDestination(f"scheme {parsed.scheme!r} is not allowed in the lab")
                await resolve(parsed.host, parsed.port or DEFAULT_PORTS["http"])
            except BlockedDestination as exc:
                problems[url] = f"{exc}{where}"
            except (httpx.InvalidURL, ValueError):
                continue  # not a URL at all: the crawler's own reason (invalid_url) says so
        return problems

    return asyncio.run(check())
