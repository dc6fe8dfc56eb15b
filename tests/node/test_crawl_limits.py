"""Crawler budgets and limits: depth, pages, concurrency, redirects, size, time, destinations."""

from __future__ import annotations

import asyncio
import socket
from contextlib import aclosing

import httpx

from node.crawl.crawler import Crawler, CrawlLimits, PageFailed, PageFetched
from node.net import make_client
from protocol.lab import LabNetwork

from .test_crawl_kit import Route, html, synthetic_web
from .test_crawl_site import crawl


async def test_depth_budget() -> None:
    with synthetic_web() as web:
        for n in range(6):
            web.a.add("site-c.test", f"/d{n}", html(f'<a href="/d{n + 1}">next</a>'))
        events, crawler = await crawl(
            web, [web.url("site-c.test", "/d0")], CrawlLimits(max_depth=2)
        )
        assert [
            (e.url.rsplit("/", 1)[1], e.depth) for e in events if isinstance(e, PageFetched)
        ] == [
            ("d0", 0),
            ("d1", 1),
            ("d2", 2),
        ]
        assert len(events) == 3
        assert crawler.stats.skipped_depth == 1
        assert "/d3" not in web.recorder.paths("site-c.test")


async def test_page_budget() -> None:
    with synthetic_web() as web:
        links = "".join(f'<a href="/p{n}.html">{n}</a>' for n in range(10))
        web.a.add("site-c.test", "/", html(links))
        for n in range(10):
            web.a.add("site-c.test", f"/p{n}.html", html(f'<img src="/i{n}.png">'))
        events, crawler = await crawl(web, [web.url("site-c.test", "/")], CrawlLimits(max_pages=4))
        pages = [e for e in events if isinstance(e, PageFetched)]
        assert len(pages) == 4
        assert not [e for e in events if isinstance(e, PageFailed)]
        assert crawler.stats.pages_scheduled == 4
        assert crawler.stats.skipped_budget == 7
        page_requests = [p for p in web.recorder.paths("site-c.test") if p != "/robots.txt"]
        assert len(page_requests) == 4


async def test_per_host_and_global_concurrency() -> None:
    with synthetic_web() as web:
        for host in ("site-a.test", "site-c.test"):
            links = "".join(f'<a href="/s{n}.html">{n}</a>' for n in range(10))
            web.a.add(host, "/", html(links))
            for n in range(10):
                web.a.add(host, f"/s{n}.html", Route(body=b"<p>slow</p>", delay_s=0.1))
        seeds = [web.url("site-a.test", "/"), web.url("site-c.test", "/")]
        limits = CrawlLimits(concurrency=3, per_host_concurrency=2)
        events, _ = await crawl(web, seeds, limits)
        assert len([e for e in events if isinstance(e, PageFetched)]) == 22
        rec = web.recorder
        assert rec.max_active["site-a.test"] == 2  # reached, never exceeded
        assert rec.max_active["site-c.test"] == 2
        assert rec.max_active_total == 3


async def test_redirect_chain_limit() -> None:
    with synthetic_web() as web:
        for n in range(20):
            web.a.add(
                "site-c.test", f"/r{n}", Route(status=302, headers={"Location": f"/r{n + 1}"})
            )
        events, _ = await crawl(web, [web.url("site-c.test", "/r0")], CrawlLimits(max_redirects=3))
        assert events == [
            PageFailed(web.url("site-c.test", "/r0"), "site-c.test", "too_many_redirects")
        ]
        assert web.recorder.paths("site-c.test") == ["/robots.txt", "/r0", "/r1", "/r2", "/r3"]


async def test_html_too_large_with_and_without_declared_length() -> None:
    with synthetic_web() as web:
        big = b"<html>" + b"x" * 5000
        web.a.add("site-c.test", "/declared", Route(body=big))
        # Without a declared length the count of bytes read decides.
        web.a.add("site-c.test", "/undeclared", Route(body=big, declare_length=False))
        web.a.add("site-c.test", "/small", html("<p>fine</p>"))
        seeds = [web.url("site-c.test", p) for p in ("/declared", "/undeclared", "/small")]
        events, _ = await crawl(web, seeds, CrawlLimits(max_html_bytes=1000))
        assert {(e.url, type(e).__name__, getattr(e, "reason", None)) for e in events} == {
            (seeds[0], "PageFailed", "html_too_large"),
            (seeds[1], "PageFailed", "html_too_large"),
            (seeds[2], "PageFetched", None),
        }


async def test_timeout_and_connect_error() -> None:
    with synthetic_web() as web:
        # Far longer than the 0.4 s timeout, so that a late timer on a loaded machine still
        # fires before the answer (the server thread sleeping it is a daemon).
        web.a.add("site-c.test", "/slow", Route(body=b"<p>late</p>", delay_s=60))
        closed = socket.socket()
        closed.bind(("127.0.0.3", 0))
        dead_port = closed.getsockname()[1]
        closed.close()
        lab = LabNetwork(
            hosts={**web.lab.hosts, "dead.test": "127.0.0.3"},
            allow_ports=[*web.lab.allow_ports, dead_port],
        )
        limits = CrawlLimits(timeout_s=0.4)
        seeds = [web.url("site-c.test", "/slow"), f"http://dead.test:{dead_port}/"]
        async with make_client(lab, timeout=0.4, user_agent=limits.user_agent) as client:
            events = [e async for e in Crawler(client, limits).crawl(seeds)]
        assert {(e.url, getattr(e, "reason", None)) for e in events} == {
            (seeds[0], "timeout"),
            (seeds[1], "connect_error"),
        }


async def test_destinations_refused() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", html("<p>home</p>"))
        web.a.add("unmapped.test", "/", html("<p>home</p>"))
        limits = CrawlLimits()
        seeds = [f"http://unmapped.test:{web.a.port}/", "not a url", "ftp://site-a.test/"]
        events, _ = await crawl(web, seeds, limits)
        assert {(e.url, getattr(e, "reason", None)) for e in events} == {
            (seeds[0], "blocked_destination"),
            (seeds[1], "invalid_url"),
            (seeds[2], "invalid_url"),
        }
        # Without a lab, loopback is off limits even as a literal address.
        async with make_client(None, timeout=2.0, user_agent=limits.user_agent) as client:
            seed = f"http://127.0.0.1:{web.a.port}/"
            events = [e async for e in Crawler(client, limits).crawl([seed])]
        assert events == [PageFailed(seed, "127.0.0.1", "blocked_destination")]
        assert web.recorder.requests == []


async def test_leaving_early_cancels_work() -> None:
    with synthetic_web() as web:
        links = "".join(f'<a href="/s{n}.html">{n}</a>' for n in range(30))
        web.a.add("site-c.test", "/", html(links))
        for n in range(30):
            web.a.add("site-c.test", f"/s{n}.html", Route(body=b"<p>slow</p>", delay_s=0.2))
        limits = CrawlLimits()
        sent: list[str] = []  # counted where requests start (the client), not where they land

        async def count(request: httpx.Request) -> None:
            sent.append(str(request.url))

        async with make_client(web.lab, timeout=5.0, user_agent=limits.user_agent) as client:
            client.event_hooks["request"].append(count)
            crawler = Crawler(client, limits)
            async with aclosing(crawler.crawl([web.url("site-c.test", "/")])) as events:
                async for event in events:
                    assert isinstance(event, PageFetched)
                    break
            before = len(sent)
            await asyncio.sleep(0.5)  # any longer pause only makes the check stricter
            # Nothing new started after the generator was closed.
            assert len(sent) == before
            assert before < 10
