"""Crawler workers sharing one node's frontier through Redis Streams (frontier/redis_streams.py).

``RedisWorker`` owns up to ``hosts_at_once`` hosts at a time, renews each host's lease while it
works the host, and fetches the host's jobs one by one with the same page logic as the
in-process crawler (``crawler.Run.process``). ``RedisCrawler`` is what the node's cycle uses when
``crawl.frontier = "redis"``: it queues the seeds, runs a local worker and yields the events
that all workers (local or on other machines, ``libra node crawl-worker``) write to the run's
event stream. Start extra workers with ``python -m node.crawl.worker --config node.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncGenerator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from node.config import NodeSettings
from node.crawl.crawler import (
    AuditHook,
    CrawlEvent,
    CrawlLimits,
    CrawlStats,
    ImageFound,
    PageFailed,
    PageFetched,
    Run,
    run_key,
)
from node.crawl.frontier import FrontierItem, MemoryFrontier
from node.crawl.frontier.redis_streams import RedisFrontier
from node.crawl.links import canonical_key, normalize_url, url_host
from node.crawl.scope import Scope

logger = logging.getLogger(__name__)


def event_to_dict(event: CrawlEvent) -> dict[str, Any]:
    kind = {PageFetched: "fetched", PageFailed: "failed", ImageFound: "image"}[type(event)]
    return {"t": kind, **asdict(event)}


def event_from_dict(data: dict[str, Any]) -> CrawlEvent:
    kind = data.pop("t")
    if kind == "fetched":
        return PageFetched(**data)
    if kind == "failed":
        return PageFailed(**data)
    return ImageFound(**data)


@dataclass
class WorkerStats:
    hosts_owned: list[str] = field(default_factory=list)
    hosts_taken_over: list[str] = field(default_factory=list)
    jobs_done: int = 0
    jobs_reclaimed: int = 0  # jobs a dead worker had read but not finished
    leases_lost: int = 0


class RedisWorker:
    def __init__(
        self,
        frontier: RedisFrontier,
        client: httpx.AsyncClient,
        limits: CrawlLimits,
        *,
        name: str | None = None,
        hosts_at_once: int = 8,
        lease_s: float = 30.0,
        audit: AuditHook | None = None,
    ) -> None:
        self.frontier = frontier
        self.limits = limits
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.hosts_at_once = max(1, hosts_at_once)
        self.lease_s = lease_s
        self.stats = WorkerStats()
        # The page logic of the in-process crawler; the shared seen-set and budget are in Redis.
        self._run = Run(
            client,
            limits,
            CrawlStats(),
            MemoryFrontier(),
            Scope(limits.scope_rules()),
            audit or (lambda host, reason: None),
        )

    async def run(self, idle_exit: bool = True) -> WorkerStats:
        """Work until the run has nothing outstanding (or forever when ``idle_exit`` is False)."""
        await self.frontier.setup()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                if len(tasks) < self.hosts_at_once:
                    got = await self.frontier.take_host(self.name, block_ms=100)
                    if got is not None:
                        task = asyncio.create_task(self._work_host(*got))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                        continue
                else:
                    await asyncio.sleep(0.05)
                if idle_exit and not tasks and await self.frontier.outstanding() <= 0:
                    return self.stats
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _work_host(self, entry_id: str, host: str, taken_over: bool) -> None:
        self.stats.hosts_owned.append(host)
        if taken_over:
            self.stats.hosts_taken_over.append(host)
            logger.warning("worker %s took over host %s (lease expired)", self.name, host)
        lost = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(entry_id, lost))
        try:
            policy = self._run.host_policy(host)
            while not lost.is_set():
                job = await self.frontier.next_job(self.name, host)
                if job is None:
                    await self.frontier.release_host(entry_id, host)
                    return
                job_id, item, reclaimed = job
                if reclaimed:
                    self.stats.jobs_reclaimed += 1
                events, new, outcome = await self._run.process(item, policy)
                await self.frontier.add(
                    [(key, url_host(child.url), child) for key, child in new],
                    self.limits.max_pages,
                    self.limits.max_pages_per_site,
                )
                await self.frontier.finish_job(
                    host,
                    job_id,
                    canonical_key(item.url),
                    outcome,
                    [event_to_dict(e) for e in events],
                )
                self.stats.jobs_done += 1
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, entry_id: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not await self.frontier.renew(self.name, entry_id):
                self.stats.leases_lost += 1
                lost.set()
                return


class RedisCrawler:
    """A crawler (for node.cycle) whose frontier is in Redis, shared with other workers."""

    def __init__(
        self,
        frontier: RedisFrontier,
        client: httpx.AsyncClient,
        limits: CrawlLimits,
        *,
        local_workers: int = 1,
        lease_s: float = 30.0,
        audit: AuditHook | None = None,
        owns_redis: bool = False,
    ) -> None:
        self.frontier = frontier
        self.limits = limits
        self._owns_redis = owns_redis
        self._workers = [
            RedisWorker(
                frontier,
                client,
                limits,
                name=f"{socket.gethostname()}-{os.getpid()}-{n}",
                lease_s=lease_s,
                audit=audit,
            )
            for n in range(local_workers)
        ]
        self.stats = CrawlStats()

    async def crawl(self, seeds: Sequence[str]) -> AsyncGenerator[CrawlEvent, None]:
        await self.frontier.setup()
        scope = Scope(self.limits.scope_rules())
        items = []
        for seed in seeds:
            url = normalize_url(seed)
            if url is None:
                yield PageFailed(url=seed, host="", reason="invalid_url")
                continue
            item = FrontierItem(url=url, depth=0, site=scope.site_of(url), referrer=url)
            items.append((canonical_key(url), url_host(url), item))
        r = self.frontier.r
        key = run_key([i.url for _, _, i in items])
        if await r.get(self.frontier.key("run")) not in (None, key.encode(), key):
            raise RuntimeError(
                f"Redis prefix {self.frontier.prefix} holds a run of other seeds: use another "
                "crawl.redis_prefix or reset it"
            )
        await r.set(self.frontier.key("run"), key)
        await self.frontier.add(items, self.limits.max_pages, self.limits.max_pages_per_site)
        tasks = [asyncio.create_task(w.run()) for w in self._workers]
        cursor = (await r.get(self.frontier.key("cursor"))) or "0-0"
        cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        try:
            while True:
                batch = await self.frontier.read_events(cursor, block_ms=200)
                for entry_id, data in batch:
                    event = event_from_dict(data)
                    self.stats.pages_scheduled += isinstance(event, PageFetched | PageFailed)
                    yield event
                    cursor = entry_id
                if batch:
                    await r.set(self.frontier.key("cursor"), cursor)
                # At 0 outstanding, drain what was written since the last read, then stop.
                elif await self.frontier.outstanding() <= 0 and not await self.frontier.read_events(
                    cursor, block_ms=1
                ):
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._owns_redis:
                await r.aclose()


async def run_worker(settings: NodeSettings, name: str | None, hosts_at_once: int) -> WorkerStats:
    """One worker process on the node's Redis frontier, until the run has nothing left."""
    from node.config import lab_of
    from node.crawl.limits import limits_from
    from node.net import make_client

    limits = limits_from(settings)
    client = make_client(lab_of(settings), timeout=limits.timeout_s, user_agent=limits.user_agent)
    redis = aioredis.Redis.from_url(settings.crawl.redis_url)
    try:
        frontier = RedisFrontier(redis, settings.crawl.redis_prefix, lease_s=settings.crawl.lease_s)
        worker = RedisWorker(
            frontier,
            client,
            limits,
            name=name,
            hosts_at_once=hosts_at_once,
            lease_s=settings.crawl.lease_s,
        )
        return await worker.run()
    finally:
        await client.aclose()
        await redis.aclose()


async def _main(config: Path, name: str | None, hosts_at_once: int) -> int:
    from node.config import load_settings

    stats = await run_worker(load_settings(config), name, hosts_at_once)
    print(json.dumps(asdict(stats)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A LIBRA crawler worker on a Redis frontier.")
    parser.add_argument("--config", type=Path, required=True, help="the node's node.toml")
    parser.add_argument("--name", default=None, help="consumer name (default host-pid)")
    parser.add_argument("--hosts-at-once", type=int, default=8, help="hosts owned at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(_main(args.config, args.name, args.hosts_at_once))


if __name__ == "__main__":
    raise SystemExit(main())
