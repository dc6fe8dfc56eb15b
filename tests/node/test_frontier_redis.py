"""The Redis Streams frontier against the real Redis at 127.0.0.1:6379: shared frontier, one
owner per host, and a killed worker's hosts and pending jobs taken over by another worker."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

from node.crawl.crawler import CrawlLimits, PageFailed, PageFetched
from node.crawl.frontier import FrontierItem
from node.crawl.frontier.redis_streams import RedisFrontier
from node.crawl.links import canonical_key
from node.crawl.worker import RedisCrawler
from node.net import make_client

from .test_crawl_kit import Route, html, synthetic_web

REDIS_URL = "redis://127.0.0.1:6379/0"


def _chain_site(web: object, hosts: tuple[str, ...], pages: int, delay: float) -> None:
    for host in hosts:
        for n in range(pages):
            links = "".join(f'<a href="/p{m}">{m}</a>' for m in (n + 1, n + 2) if m < pages)
            links += f'<img src="/img{n}.png">'
            web.a.add(host, f"/p{n}", Route(body=html(links).body, delay_s=delay))  # type: ignore[attr-defined]


async def test_redis_crawler_fetches_every_page_once(redis_prefix: str) -> None:
    hosts = ("site-a.test", "site-c.test")
    with synthetic_web() as web:
        _chain_site(web, hosts, 15, 0.0)
        client = make_client(web.lab, timeout=5, user_agent="LIBRA-node/test")
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            frontier = RedisFrontier(r, redis_prefix, lease_s=5)
            crawler = RedisCrawler(
                frontier, client, CrawlLimits(max_depth=100), local_workers=2, lease_s=5
            )
            events = [e async for e in crawler.crawl([web.url(h, "/p0") for h in hosts])]
        finally:
            await client.aclose()
            await r.aclose()
        fetched = Counter(e.url for e in events if isinstance(e, PageFetched))
        assert not [e for e in events if isinstance(e, PageFailed)]
        assert set(fetched) == {web.url(h, f"/p{n}") for h in hosts for n in range(15)}
        assert set(fetched.values()) == {1}
        requests = Counter((h, p) for h in hosts for p in web.recorder.paths(h))
        assert max(requests.values()) == 1  # robots.txt once per host, every page once
        # one owner per host: never two requests at once to one host
        assert max(web.recorder.max_active[h] for h in hosts) == 1


def _config(tmp_path: Path, web: object, hosts: tuple[str, ...], prefix: str) -> Path:
    lab = tmp_path / "lab.toml"
    lab.write_text(
        f"allow_ports = [{web.a.port}]\n[hosts]\n"  # type: ignore[attr-defined]
        + "".join(f'"{h}" = "127.0.0.1"\n' for h in hosts)
    )
    config = tmp_path / "node.toml"
    config.write_text(
        'node_id = "node-redis"\ncountry = "DE"\nlab = "lab.toml"\n[crawl]\n'
        f'frontier = "redis"\nredis_url = "{REDIS_URL}"\nredis_prefix = "{prefix}"\n'
        "lease_s = 1.0\nmax_depth = 100\n"
    )
    return config


def _worker(config: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node.crawl.worker",
            "--config",
            str(config),
            "--name",
            name,
            "--hosts-at-once",
            "8",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


GATE_PAGE = 4  # /p4 of every host blocks until the test opens the gate


def _gated(route: Route, gate: threading.Event) -> Callable[[], Route]:
    def serve() -> Route:
        gate.wait()
        return route

    return serve


def test_killed_worker_hosts_and_pending_jobs_are_taken_over(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Every host of a killed worker is taken over exactly once, and exactly its unfinished jobs
    are fetched again. No step depends on speed: the dead worker is killed while a gate in the
    web holds one job of every host in flight, whatever the load."""
    hosts = ("site-a.test", "site-c.test", "host-3.test", "host-4.test")
    pages = 12
    gate = threading.Event()
    with synthetic_web() as web:
        for h in hosts[2:]:
            web.lab.hosts[h] = "127.0.0.1"
        _chain_site(web, hosts, pages, 0.0)
        for h in hosts:
            route = web.a.routes[(h, f"/p{GATE_PAGE}")]
            assert isinstance(route, Route)
            web.a.add(h, f"/p{GATE_PAGE}", _gated(route, gate))
        config = _config(tmp_path, web, hosts, redis_prefix)

        async def seed() -> None:
            r = aioredis.Redis.from_url(REDIS_URL)
            frontier = RedisFrontier(r, redis_prefix, lease_s=1.0)
            await frontier.setup()
            items = []
            for h in hosts:
                url = web.url(h, "/p0")
                items.append((canonical_key(url), h, FrontierItem(url, 0, h, 0, url)))
            assert await frontier.add(items, 10_000) == len(hosts)
            await r.aclose()

        asyncio.run(seed())
        sync = redis.Redis.from_url(REDIS_URL)
        first = _worker(config, "worker-a")
        # Until worker-a waits at the gate on every host (pytest-timeout bounds a hang).
        while not all(f"/p{GATE_PAGE}" in web.recorder.paths(h) for h in hosts):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        pending = sync.xpending(f"{redis_prefix}:hosts", "crawlers")
        assert {c["name"].decode(): c["pending"] for c in pending["consumers"]} == {
            "worker-a": len(hosts)
        }
        in_flight = {
            h: sync.xpending(f"{redis_prefix}:jobs:{h}", "crawlers")["pending"] for h in hosts
        }
        assert in_flight == {h: 1 for h in hosts}  # the gated page of each host
        gate.set()

        second = _worker(config, "worker-b")
        out, err = second.communicate()  # pytest-timeout bounds it
        assert second.returncode == 0, err
        stats = json.loads(out.strip().splitlines()[-1])
        # Ownership moved once per host, and only the jobs in flight at the kill were reclaimed.
        assert sorted(stats["hosts_taken_over"]) == sorted(hosts)
        assert stats["jobs_reclaimed"] == len(hosts)
        assert sync.hlen(f"{redis_prefix}:outcome") == len(hosts) * pages
        assert int(sync.get(f"{redis_prefix}:outstanding") or 0) == 0
        requests = Counter(
            (h, p) for h in hosts for p in web.recorder.paths(h) if p != "/robots.txt"
        )
        # Every page once, the gated one twice (the dead worker's attempt and the new owner's).
        assert requests == Counter(
            {(h, f"/p{n}"): 2 if n == GATE_PAGE else 1 for h in hosts for n in range(pages)}
        )


async def test_a_host_changes_owner_exactly_once_per_expiry(redis_prefix: str) -> None:
    """take_host never hands a worker a host it owns already, hands an expired host to one other
    worker only, and the old owner's renewal then fails rather than claiming it back."""
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        short = RedisFrontier(r, redis_prefix, lease_s=0.05)  # expires almost at once
        long = RedisFrontier(r, redis_prefix, lease_s=3600.0)  # never expires in this test
        await short.setup()
        url = "http://site-a.test/"
        item = FrontierItem(url, 0, "site-a.test", 0, url)
        assert await short.add([(canonical_key(url), "site-a.test", item)], 100) == 1
        entry, host, taken_over = await short.take_host("a", block_ms=100) or ("", "", True)
        assert host == "site-a.test" and not taken_over
        await asyncio.sleep(0.2)  # a lower bound only: any longer wait gives the same result
        # Expired, but it is a's own host: a does not take it "over" a second time.
        assert await short.take_host("a", block_ms=1) is None
        assert await short.owner_of(entry) == "a"
        # Another worker takes it over, once.
        assert await short.take_host("b", block_ms=1) == (entry, "site-a.test", True)
        assert await short.owner_of(entry) == "b"
        assert await long.take_host("c", block_ms=1) is None  # b's lease is fresh for c
        # a's renewal fails and leaves the host with b; b's own renewal succeeds.
        assert await short.renew("a", entry) is False
        assert await short.owner_of(entry) == "b"
        assert await short.renew("b", entry) is True
        await short.release_host(entry, host)
        assert await short.renew("b", entry) is False  # released: nothing to renew
    finally:
        await r.aclose()


async def test_redis_frontier_enforces_max_pages_per_site(redis_prefix: str) -> None:
    hosts = ("site-a.test", "site-c.test")
    with synthetic_web() as web:
        _chain_site(web, hosts, 15, 0.0)
        client = make_client(web.lab, timeout=5, user_agent="LIBRA-node/test")
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            frontier = RedisFrontier(r, redis_prefix, lease_s=5)
            limits = CrawlLimits(max_depth=100, max_pages_per_site=5)
            crawler = RedisCrawler(frontier, client, limits, local_workers=3, lease_s=5)
            events = [e async for e in crawler.crawl([web.url(h, "/p0") for h in hosts])]
            budgets = [int(await r.get(frontier.key(f"site:{h}")) or 0) for h in hosts]
        finally:
            await client.aclose()
            await r.aclose()
    fetched = Counter(e.host for e in events if isinstance(e, PageFetched))
    assert fetched == {h: 5 for h in hosts}
    assert budgets == [5, 5]


async def test_redis_site_budget_is_atomic_across_concurrent_adders(redis_prefix: str) -> None:
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        frontier = RedisFrontier(r, redis_prefix, lease_s=5)
        await frontier.setup()

        def batch(worker: int) -> list[tuple[str, str, FrontierItem]]:
            out = []
            for n in range(10):
                url = f"http://site-a.test/w{worker}/p{n}"
                item = FrontierItem(url=url, depth=1, site="site-a.test", referrer=url)
                out.append((canonical_key(url), "site-a.test", item))
            return out

        # Eight "workers" race to queue 80 pages of one site with a budget of 7.
        added = await asyncio.gather(*(frontier.add(batch(w), 10_000, 7) for w in range(8)))
        assert sum(added) == 7
        assert int(await r.get(frontier.key("site:site-a.test")) or 0) == 7
        assert await frontier.outstanding() == 7
        # Another site has its own budget; 0 means no per-site budget.
        other = FrontierItem(url="http://site-c.test/", depth=0, site="site-c.test", referrer="")
        assert await frontier.add([("k-c", "site-c.test", other)], 10_000, 7) == 1
        more = [(f"k{n}", "site-a.test", batch(9)[n][2]) for n in range(3)]
        assert await frontier.add(more, 10_000, 0) == 3
    finally:
        await r.aclose()
