"""Redis crawl workers (issue 17) against the real Redis at 127.0.0.1:6379 and a loopback web:
``crawl.concurrency`` and ``crawl.per_host_concurrency`` honoured inside one worker, two worker
processes that neither lose nor repeat a job, and ``libra node crawl-worker --forever``, which
picks up work queued later and, stopped by a signal, gives its unfinished jobs back.

No assertion depends on speed: gates in the web hold requests until the expected number is in
flight (or a generous deadline passes, and then the count is wrong and the test fails)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from node.crawl.crawler import CrawlLimits, PageFetched
from node.crawl.frontier import FrontierItem
from node.crawl.frontier.redis_streams import RedisFrontier
from node.crawl.links import canonical_key
from node.crawl.worker import RedisCrawler, RedisWorker
from node.net import make_client

from .test_crawl_kit import Recorder, Route, Web, html, synthetic_web

REDIS_URL = "redis://127.0.0.1:6379/0"
# A bound on a hang, never reached when the code is right, even at load average 20 (where
# starting a worker alone has taken 15 s): waits on progress restart it whenever progress is seen.
GATE_DEADLINE_S = 120.0
LIBRA = Path(sys.executable).with_name("libra")
FOREVER = ["--name", "w", "--forever", "--stop-grace", "0.2"]


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    """A fresh key prefix on the test Redis (tests/node/conftest.py, removed afterwards)."""
    return redis_prefix


class Gate:
    """Holds every gated request until ``target`` requests are in flight at once, then lets
    all through (for good)."""

    def __init__(self, recorder: Recorder, target: int) -> None:
        self.recorder = recorder
        self.target = target
        self.opened = threading.Event()

    def wrap(self, route: Route) -> Callable[[], Route]:
        def serve() -> Route:
            with self.recorder.lock:
                if self.recorder.active_total >= self.target:
                    self.opened.set()
            self.opened.wait(GATE_DEADLINE_S)
            return route

        return serve


def _site(web: Web, hosts: list[str], pages: int, fan_out: int) -> None:
    """Page n of each host links the next ``fan_out`` pages of its host."""
    for host in hosts:
        web.lab.hosts[host] = "127.0.0.1"
        for n in range(pages):
            links = "".join(f'<a href="/p{m}">{m}</a>' for m in range(n + 1, n + 1 + fan_out))
            web.a.add(host, f"/p{n}", html(links if n + fan_out < pages else ""))


def _seeds(web: Web, hosts: list[str]) -> list[tuple[str, str, FrontierItem]]:
    return [
        (canonical_key(url), h, FrontierItem(url, 0, h, 0, url))
        for h in hosts
        for url in [web.url(h, "/p0")]
    ]


def _served(web: Web, hosts: list[str]) -> Counter[tuple[str, str]]:
    return Counter((h, p) for h in hosts for p in web.recorder.paths(h) if p != "/robots.txt")


@pytest.mark.parametrize(
    ("hosts", "concurrency", "per_host"),
    [(16, 10, 1), (3, 9, 3)],
    ids=["many-hosts", "per-host-3"],
)
async def test_a_worker_fills_and_never_exceeds_its_concurrency(
    prefix: str, hosts: int, concurrency: int, per_host: int
) -> None:
    """With more work than slots, exactly ``crawl.concurrency`` requests are in flight at the
    peak (not fewer: the old worker stopped at 8 hosts, one page each), never more than
    ``per_host_concurrency`` to one host, and every page is fetched once."""
    names = [f"host-{n}.test" for n in range(hosts)]
    pages = 8
    with synthetic_web() as web:
        _site(web, names, pages, fan_out=7)
        gate = Gate(web.recorder, concurrency)
        for h in names:
            for n in range(1 if per_host > 1 else 0, pages):  # p0 of each host is not gated
                route = web.a.routes[(h, f"/p{n}")]
                assert isinstance(route, Route)
                web.a.add(h, f"/p{n}", gate.wrap(route))
        limits = CrawlLimits(
            max_depth=100,
            concurrency=concurrency,
            per_host_concurrency=per_host,
            obey_robots=False,
            sitemaps=False,
            timeout_s=GATE_DEADLINE_S + 30,
        )
        client = make_client(web.lab, timeout=limits.timeout_s, user_agent="LIBRA-node/test")
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            frontier = RedisFrontier(r, prefix, lease_s=60)
            await frontier.setup()
            assert await frontier.add(_seeds(web, names), 10_000) == hosts
            stats = await RedisWorker(frontier, client, limits, name="w").run()
            outstanding = await frontier.outstanding()
        finally:
            await client.aclose()
            await r.aclose()
        assert gate.opened.is_set()
        assert web.recorder.max_active_total == concurrency
        assert max(web.recorder.max_active[h] for h in names) == per_host
        assert _served(web, names) == Counter(
            {(h, f"/p{n}"): 1 for h in names for n in range(pages)}
        )
        assert stats.jobs_done == hosts * pages and outstanding == 0


def _config(tmp_path: Path, web: Web, prefix: str, extra: str = "") -> Path:
    lab = tmp_path / "lab.toml"
    lab.write_text(
        f"allow_ports = [{web.a.port}]\n[hosts]\n"
        + "".join(f'"{h}" = "{ip}"\n' for h, ip in web.lab.hosts.items())
    )
    config = tmp_path / "node.toml"
    config.write_text(
        f'node_id = "node-redis"\ncountry = "DE"\nlab = "lab.toml"\n'
        f'data_dir = "{tmp_path}"\n[crawl]\n'
        f'frontier = "redis"\nredis_url = "{REDIS_URL}"\nredis_prefix = "{prefix}"\n'
        f"lease_s = 30.0\nmax_depth = 100\n{extra}"
    )
    return config


def _consumers(sync: redis.Redis, prefix: str) -> list[str]:
    try:
        infos = sync.xinfo_consumers(f"{prefix}:hosts", "crawlers")
    except redis.ResponseError:
        return []  # no group yet
    return sorted(c["name"].decode() for c in infos)


def _until(
    check: Callable[[], bool],
    proc: subprocess.Popen[str] | None = None,
    progress: Callable[[], object] | None = None,
) -> None:
    """Wait for ``check`` (a bound on a hang only: failing it fails the test). With ``progress``,
    the bound restarts whenever its value changes, so a slow machine that is still working is
    never failed for being slow."""
    deadline = time.monotonic() + GATE_DEADLINE_S
    seen = progress() if progress is not None else None
    while not check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited early: {proc.communicate()}")
        if progress is not None and (now := progress()) != seen:
            seen, deadline = now, time.monotonic() + GATE_DEADLINE_S
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached (last progress: {seen!r})")
        time.sleep(0.02)


def _recorded(sync: redis.Redis, prefix: str, pages: int) -> bool:
    """``pages`` outcomes recorded and nothing outstanding."""
    done = sync.hlen(f"{prefix}:outcome") == pages
    return done and int(sync.get(f"{prefix}:outstanding") or 0) == 0


def _seed(prefix: str, items: list[tuple[str, str, FrontierItem]]) -> int:
    async def add() -> int:
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            frontier = RedisFrontier(r, prefix)
            await frontier.setup()
            return await frontier.add(items, 10_000)
        finally:
            await r.aclose()

    return asyncio.run(add())


def test_two_worker_processes_fetch_every_page_exactly_once(tmp_path: Path, prefix: str) -> None:
    """Two processes, three hosts each at most: the gate on /p1 opens only when all six hosts
    are in flight at once, which needs both workers; every page is then served once and the
    run's accounting closes (every outcome recorded, nothing outstanding or pending)."""
    names = [f"host-{n}.test" for n in range(6)]
    pages = 20
    sync = redis.Redis.from_url(REDIS_URL)
    with synthetic_web() as web:
        _site(web, names, pages, fan_out=3)
        gate = Gate(web.recorder, len(names))
        for h in names:
            route = web.a.routes[(h, "/p1")]
            assert isinstance(route, Route)
            web.a.add(h, "/p1", gate.wrap(route))
        config = _config(tmp_path, web, prefix)
        command = [sys.executable, "-m", "node.crawl.worker", "--config", str(config)]
        workers = [
            subprocess.Popen(
                [*command, "--name", f"w{n}", "--hosts-at-once", "3", "--forever"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        try:
            _until(lambda: _consumers(sync, prefix) == ["w0", "w1"])
            assert _seed(prefix, _seeds(web, names)) == len(names)
            outcomes = partial(sync.hlen, f"{prefix}:outcome")
            _until(lambda: outcomes() == len(names) * pages, progress=outcomes)
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate() for proc in workers]
        assert [proc.returncode for proc in workers] == [0, 0], outputs
        stats = [json.loads(out.strip().splitlines()[-1]) for out, _err in outputs]
        assert gate.opened.is_set()
        assert web.recorder.max_active_total == len(names)
        assert _served(web, names) == Counter(
            {(h, f"/p{n}"): 1 for h in names for n in range(pages)}
        )
        assert sum(s["jobs_done"] for s in stats) == len(names) * pages
        assert all(s["jobs_done"] > 0 for s in stats)
        assert int(sync.get(f"{prefix}:outstanding") or 0) == 0
        assert sync.xpending(f"{prefix}:hosts", "crawlers")["pending"] == 0
        assert _consumers(sync, prefix) == []  # both left the group on stop


def test_forever_worker_takes_later_work_and_gives_back_unfinished_jobs_on_sigterm(
    tmp_path: Path, prefix: str
) -> None:
    """``libra node crawl-worker --forever`` waits on an empty frontier, crawls what is queued
    later, and on SIGTERM queues its unfinished jobs again (the one held in flight by a closed
    gate, and those read but not started) before it exits 0; another worker then finishes the
    run, so every page is served once (the held one twice) and nothing is lost."""
    names = ["early.test", "later.test", "held.test"]
    pages = 10
    held_page = 3
    release = threading.Event()
    sync = redis.Redis.from_url(REDIS_URL)
    with synthetic_web() as web:
        _site(web, names, pages, fan_out=3)
        held = web.a.routes[("held.test", f"/p{held_page}")]
        assert isinstance(held, Route)

        def hold() -> Route:
            release.wait(GATE_DEADLINE_S)
            return held

        web.a.add("held.test", f"/p{held_page}", hold)
        config = _config(tmp_path, web, prefix, "obey_robots = false\n")
        worker = subprocess.Popen(
            [str(LIBRA), "node", "crawl-worker", "--config", str(config), *FOREVER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _until(lambda: _consumers(sync, prefix) == ["w"], worker)
            seeds = {seed[1]: seed for seed in _seeds(web, names)}
            for count, host in enumerate(("early.test", "later.test"), start=1):
                assert _seed(prefix, [seeds[host]]) == 1
                _until(
                    partial(_recorded, sync, prefix, count * pages),
                    worker,
                    progress=partial(sync.hlen, f"{prefix}:outcome"),
                )
            assert worker.poll() is None  # an empty frontier does not end it
            assert _seed(prefix, [seeds["held.test"]]) == 1
            _until(lambda: f"/p{held_page}" in web.recorder.paths("held.test"), worker)
        finally:
            worker.send_signal(signal.SIGTERM)
            _out, err = worker.communicate()
            release.set()
        assert worker.returncode == 0, err
        returned = re.search(r"(\d+) returned unfinished", err)
        assert returned is not None and int(returned.group(1)) >= 1  # the held job at least
        # The held job and the ones read with it are queued again, none pending, host announced:
        # /p3 (held), and /p4, /p5 that /p1 and /p2 linked.
        assert int(sync.get(f"{prefix}:outstanding") or 0) == 3
        assert sync.xpending(f"{prefix}:jobs:held.test", "crawlers")["pending"] == 0
        assert sync.xpending(f"{prefix}:hosts", "crawlers")["pending"] == 0
        assert sync.smembers(f"{prefix}:active") == {b"held.test"}
        finisher = subprocess.run(
            [sys.executable, "-m", "node.crawl.worker", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        finished = json.loads(finisher.stdout.strip().splitlines()[-1])
        assert finished["jobs_done"] == pages - held_page
        expected = Counter({(h, f"/p{n}"): 1 for h in names for n in range(pages)})
        expected[("held.test", f"/p{held_page}")] = 2
        assert _served(web, names) == expected
        assert sync.hlen(f"{prefix}:outcome") == len(names) * pages
        assert int(sync.get(f"{prefix}:outstanding") or 0) == 0


async def test_the_next_cycle_crawls_a_finished_run_again(prefix: str) -> None:
    """A run crawled to the end is over: the next cycle with the same seeds fetches its pages
    again (as with the SQLite frontier) instead of finding them all seen; the second cycle's
    events are its own, not the first one's replayed."""
    names = ["host-0.test", "host-1.test"]
    pages = 5
    with synthetic_web() as web:
        _site(web, names, pages, fan_out=2)
        client = make_client(web.lab, timeout=10, user_agent="LIBRA-node/test")
        r = aioredis.Redis.from_url(REDIS_URL)
        limits = CrawlLimits(max_depth=100, obey_robots=False, sitemaps=False)
        cycles = []
        try:
            for _ in range(2):
                crawler = RedisCrawler(RedisFrontier(r, prefix, lease_s=30), client, limits)
                events = [e async for e in crawler.crawl([web.url(h, "/p0") for h in names])]
                cycles.append(Counter(e.url for e in events if isinstance(e, PageFetched)))
        finally:
            await client.aclose()
            await r.aclose()
        every_page = Counter({web.url(h, f"/p{n}"): 1 for h in names for n in range(pages)})
        assert cycles == [every_page, every_page]
        assert _served(web, names) == Counter(
            {(h, f"/p{n}"): 2 for h in names for n in range(pages)}
        )


async def test_a_forever_worker_starts_each_run_afresh(prefix: str) -> None:
    """One worker outlives two cycles of the same seeds: the second cycle gets every page and
    every image again (the worker's per-run caches of images emitted and links sent are
    per run, not per process)."""
    names = ["host-0.test"]
    pages = 4
    with synthetic_web() as web:
        web.lab.hosts["host-0.test"] = "127.0.0.1"
        for n in range(pages):
            links = f'<a href="/p{n + 1}">next</a>' if n + 1 < pages else ""
            web.a.add("host-0.test", f"/p{n}", html(f'{links}<img src="/i{n}.png">'))
        client = make_client(web.lab, timeout=10, user_agent="LIBRA-node/test")
        r = aioredis.Redis.from_url(REDIS_URL)
        limits = CrawlLimits(max_depth=100, obey_robots=False, sitemaps=False)
        worker = RedisWorker(RedisFrontier(r, prefix, lease_s=30), client, limits, name="w")
        working = asyncio.create_task(worker.run(idle_exit=False))
        cycles = []
        try:
            for _ in range(2):
                crawler = RedisCrawler(
                    RedisFrontier(r, prefix, lease_s=30), client, limits, local_workers=0
                )
                events = [e async for e in crawler.crawl([web.url("host-0.test", "/p0")])]
                cycles.append(Counter(type(e).__name__ for e in events))
            assert not working.done()
            worker.stop()
            stats = await working
        finally:
            worker.stop()
            await client.aclose()
            await r.aclose()
        assert cycles == [Counter({"PageFetched": pages, "ImageFound": pages})] * 2
        assert stats.jobs_done == 2 * pages
        assert _served(web, names) == Counter({(names[0], f"/p{n}"): 2 for n in range(pages)})
