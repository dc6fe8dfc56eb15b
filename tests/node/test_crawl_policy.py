"""Issue 5 behaviour: politeness, back-off, robots override, scope, sitemaps, resume, data: URIs."""

from __future__ import annotations

import contextlib
import gzip
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.crawl.crawler import Crawler, CrawlLimits, ImageFound, PageFailed, PageFetched
from node.crawl.frontier.sqlite import SqliteFrontier
from node.crawl.politeness import HostPolicy, Politeness, parse_retry_after
from node.crawl.scope import Scope, ScopeError, ScopeRules, registered_domain
from node.crawl.sitemaps import SitemapError, parse_sitemap
from node.net import make_client

from .test_crawl_kit import Route, html, synthetic_web
from .test_crawl_site import crawl

ROBOTS = "text/plain"


def _robots(text: str) -> Route:
    return Route(body=text.encode(), content_type=ROBOTS)


# --------------------------------------------------------------------------- politeness


async def test_min_delay_spaces_requests_to_one_host() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", html("".join(f'<a href="/p{n}">x</a>' for n in range(4))))
        for n in range(4):
            web.a.add("site-a.test", f"/p{n}", html("ok"))
        started = time.monotonic()
        events, _ = await crawl(
            web, [web.url("site-a.test", "/")], CrawlLimits(min_delay_s=0.15, concurrency=8)
        )
        elapsed = time.monotonic() - started
        assert sum(isinstance(e, PageFetched) for e in events) == 5
        # robots + 5 pages = 6 requests, 5 gaps of >= 0.15 s
        assert elapsed >= 5 * 0.15 * 0.95
        assert web.recorder.max_active["site-a.test"] == 1


async def test_robots_crawl_delay_is_obeyed_and_capped() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/robots.txt", _robots("User-agent: *\nCrawl-delay: 0.2\n"))
        web.a.add("site-a.test", "/", html('<a href="/a">a</a><a href="/b">b</a>'))
        web.a.add("site-a.test", "/a", html("a"))
        web.a.add("site-a.test", "/b", html("b"))
        started = time.monotonic()
        await crawl(web, [web.url("site-a.test", "/")], CrawlLimits())
        assert time.monotonic() - started >= 3 * 0.2 * 0.95
        # A hostile Crawl-delay is capped by max_crawl_delay_s.
        web.a.add("site-c.test", "/robots.txt", _robots("User-agent: *\nCrawl-delay: 3600\n"))
        web.a.add("site-c.test", "/", html('<a href="/a">a</a>'))
        web.a.add("site-c.test", "/a", html("a"))
        started = time.monotonic()
        events, _ = await crawl(
            web, [web.url("site-c.test", "/")], CrawlLimits(max_crawl_delay_s=0.1)
        )
        assert sum(isinstance(e, PageFetched) for e in events) == 2
        # Uncapped, the gap would be 3600 s: any bound far below it tells the two apart, and
        # this one is far above what even a crawl on a loaded machine takes.
        assert time.monotonic() - started < 1800


async def test_429_with_retry_after_is_retried_after_the_wait() -> None:
    answers = iter(
        [Route(status=429, headers={"Retry-After": "1"}, body=b"slow down"), html("finally")]
    )
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", lambda: next(answers))
        started = time.monotonic()
        events, crawler = await crawl(web, [web.url("site-a.test", "/")], CrawlLimits())
        assert [type(e) for e in events] == [PageFetched]
        assert time.monotonic() - started >= 0.95
        assert crawler.stats.retries == 1 and crawler.stats.throttled == 1


async def test_persistent_503_fails_after_retries_with_reason() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", Route(status=503, body=b"busy"))
        limits = CrawlLimits(retries=2, backoff_base_s=0.05, max_backoff_s=0.1)
        events, crawler = await crawl(web, [web.url("site-a.test", "/")], limits)
        assert events == [PageFailed(web.url("site-a.test", "/"), "site-a.test", "http_503")]
        assert web.recorder.paths("site-a.test").count("/") == 3
        assert crawler.stats.failures == {"http_503": 1}


def test_backoff_doubles_then_recovers_and_retry_after_parses() -> None:
    clock = [100.0]
    policy = HostPolicy(
        Politeness(backoff_base_s=1, max_backoff_s=8, slow_response_s=2), clock=lambda: clock[0]
    )
    for expected in (1, 2, 4, 8, 8):
        policy._slots.acquire
        policy.release(503, 0.1, None)
        policy._slots.release
        assert policy.backoff_s == expected
    policy.release(200, 3.0, None)  # slow answer: backs off too
    assert policy.backoff_s == 8
    policy.release(200, 0.1, None)
    assert policy.backoff_s == 4
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=0) > 1e9
    assert parse_retry_after("garbage") is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    got = parse_retry_after(value)
    assert got is None or got >= 0


# --------------------------------------------------------------------------- robots override


async def test_robots_override_for_listed_hosts_is_audited() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/robots.txt", _robots("User-agent: *\nDisallow: /\n"))
        web.a.add("site-a.test", "/", html('<img src="/x.png">'))
        web.a.add("site-c.test", "/robots.txt", _robots("User-agent: *\nDisallow: /\n"))
        web.a.add("site-c.test", "/", html("no"))
        audited: list[tuple[str, str]] = []
        limits = CrawlLimits(robots_override_hosts=("site-a.test",))
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            crawler = Crawler(client, limits, audit=lambda h, r: audited.append((h, r)))
            seeds = [web.url("site-a.test", "/"), web.url("site-c.test", "/")]
            events = [e async for e in crawler.crawl(seeds)]
        by_host = {e.host: e for e in events if isinstance(e, PageFetched | PageFailed)}
        assert isinstance(by_host["site-a.test"], PageFetched)
        assert by_host["site-c.test"] == PageFailed(seeds[1], "site-c.test", "robots_disallowed")
        assert audited == [("site-a.test", "crawl.robots_override_hosts")]
        assert "/robots.txt" not in web.recorder.paths("site-a.test")
        assert crawler.stats.robots_overridden == 1


# --------------------------------------------------------------------------- scope


def test_registered_domains_use_the_bundled_list_only() -> None:
    assert registered_domain("a.b.example.co.uk") == "example.co.uk"
    assert registered_domain("shop1.hoster-a.test") == "shop1.hoster-a.test"  # no known suffix
    assert registered_domain("127.0.0.1") == "127.0.0.1"


def test_scope_rules() -> None:
    scope = Scope(ScopeRules(mode="domain", external_hops=1, exclude=(r"/logout",)))
    site = scope.site_of("http://www.example.co.uk/")
    assert scope.judge("http://img.example.co.uk/a", site, 0).follow
    off = scope.judge("http://other.example/", site, 0)
    assert off.follow and off.hops == 1
    assert scope.judge("http://third.example/", site, 1).reason == "offsite"
    assert scope.judge("http://www.example.co.uk/logout", site, 0).reason == "excluded"
    only = Scope(ScopeRules(include=(r"/gallery/",)))
    assert only.judge("http://a.test/x", "a.test", 0).reason == "not_included"
    with pytest.raises(ScopeError):
        Scope(ScopeRules(include=("(",)))


async def test_external_hops_and_per_site_budget() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", html(f'<a href="{web.url("site-c.test", "/")}">c</a>'))
        web.a.add("site-c.test", "/", html(f'<a href="{web.url("site-b.test", "/")}">b</a>'))
        web.b.add("site-b.test", "/", html("far"))
        seeds = [web.url("site-a.test", "/")]
        events, crawler = await crawl(web, seeds, CrawlLimits(external_hops=1))
        fetched = {e.host for e in events if isinstance(e, PageFetched)}
        assert fetched == {"site-a.test", "site-c.test"}
        assert crawler.stats.offsite_links == 1
        web.a.add("site-a.test", "/", html("".join(f'<a href="/p{n}">p</a>' for n in range(9))))
        for n in range(9):
            web.a.add("site-a.test", f"/p{n}", html("p"))
        events, crawler = await crawl(web, seeds, CrawlLimits(max_pages_per_site=4))
        assert sum(isinstance(e, PageFetched) for e in events) == 4
        assert crawler.stats.skipped_budget == 6


async def test_include_exclude_patterns_in_a_crawl() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", html('<a href="/keep/1">k</a><a href="/drop/1">d</a>'))
        web.a.add("site-a.test", "/keep/1", html("k"))
        web.a.add("site-a.test", "/drop/1", html("d"))
        events, crawler = await crawl(
            web, [web.url("site-a.test", "/")], CrawlLimits(exclude=(r"/drop/",))
        )
        assert {e.url for e in events if isinstance(e, PageFetched)} == {
            web.url("site-a.test", "/"),
            web.url("site-a.test", "/keep/1"),
        }
        assert crawler.stats.skipped_pattern == 1


# --------------------------------------------------------------------------- sitemaps


def test_sitemap_parsing() -> None:
    urlset = (
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc> http://a.test/x </loc></url></urlset>"
    )
    assert parse_sitemap(urlset).pages == ["http://a.test/x"]
    assert parse_sitemap(gzip.compress(urlset)).pages == ["http://a.test/x"]
    index = b"<sitemapindex><sitemap><loc>http://a.test/s2.xml</loc></sitemap></sitemapindex>"
    assert parse_sitemap(index).sitemaps == ["http://a.test/s2.xml"]
    for bad in (b"<html>", b'<!DOCTYPE x [<!ENTITY a "b">]><urlset/>', b"<feed/>"):
        with pytest.raises(SitemapError):
            parse_sitemap(bad)


@given(st.binary(max_size=300))
def test_sitemap_parser_raises_only_sitemap_errors(data: bytes) -> None:
    with contextlib.suppress(SitemapError):
        parse_sitemap(data)


async def test_robots_sitemap_and_index_feed_the_frontier() -> None:
    with synthetic_web() as web:
        u = lambda p: web.url("site-a.test", p)  # noqa: E731
        web.a.add(
            "site-a.test", "/robots.txt", _robots(f"User-agent: *\nSitemap: {u('/idx.xml')}\n")
        )
        web.a.add(
            "site-a.test",
            "/idx.xml",
            Route(
                content_type="application/xml",
                body=f"<sitemapindex><sitemap><loc>{u('/s1.xml')}</loc></sitemap></sitemapindex>".encode(),
            ),
        )
        web.a.add(
            "site-a.test",
            "/s1.xml",
            Route(
                content_type="application/xml",
                body=f"<urlset><url><loc>{u('/orphan')}</loc></url><url><loc>http://elsewhere.test/</loc></url></urlset>".encode(),
            ),
        )
        web.a.add("site-a.test", "/", html("home, no links"))
        web.a.add("site-a.test", "/orphan", html('<img src="/o.png">'))
        events, crawler = await crawl(web, [u("/")], CrawlLimits())
        assert {e.url for e in events if isinstance(e, PageFetched)} == {u("/"), u("/orphan")}
        assert {e.url for e in events if isinstance(e, ImageFound)} == {u("/o.png")}
        assert crawler.stats.sitemaps_fetched == 2
        assert crawler.stats.sitemap_urls == 1


# --------------------------------------------------------------------------- frontier


async def test_resumed_run_does_not_refetch_a_redirect_target(tmp_path: Path) -> None:
    """A page reached through a redirect before the stop is not fetched again after it, even
    when a page crawled after the restart links to it directly."""
    with synthetic_web() as web:
        u = lambda p: web.url("site-a.test", p)  # noqa: E731
        web.a.add("site-a.test", "/", html('<a href="/r">r</a><a href="/x">x</a>'))
        web.a.add("site-a.test", "/r", Route(status=302, headers={"Location": "/t"}))
        web.a.add("site-a.test", "/t", html("target"))
        web.a.add("site-a.test", "/x", html('<a href="/t">t</a>'))
        # One request at a time with a pause, so the stop lands before "/x" is fetched.
        limits = CrawlLimits(per_host_concurrency=1, min_delay_s=0.5)
        db = tmp_path / "node.sqlite3"
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            first = SqliteFrontier(db)
            gen = Crawler(client, limits, frontier=first).crawl([u("/")])
            async for event in gen:
                if isinstance(event, PageFetched) and event.url == u("/r"):
                    break
            await gen.aclose()
            first.close()
            assert "/x" not in web.recorder.paths("site-a.test"), "stopped too late"
            again = SqliteFrontier(db)
            events = [e async for e in Crawler(client, limits, frontier=again).crawl([u("/")])]
            again.close()
        assert web.recorder.paths("site-a.test").count("/t") == 1
        assert web.recorder.paths("site-a.test").count("/x") == 1
        assert not [e for e in events if isinstance(e, PageFailed)]


async def test_sqlite_frontier_resumes_an_unfinished_run(tmp_path: Path) -> None:
    with synthetic_web() as web:
        u = lambda p: web.url("site-a.test", p)  # noqa: E731
        web.a.add(
            "site-a.test", "/", html('<a href="/a">a</a><a href="/b">b</a><img src="/i.png">')
        )
        web.a.add("site-a.test", "/a", html("a"))
        web.a.add("site-a.test", "/b", html("b"))
        limits = CrawlLimits()
        db = tmp_path / "node.sqlite3"
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            first = SqliteFrontier(db)
            crawler = Crawler(client, limits, frontier=first)
            gen = crawler.crawl([u("/")])
            seen = []
            async for event in gen:  # stop after the first page: "killed"
                seen.append(event)
                if isinstance(event, PageFetched):
                    break
            await gen.aclose()
            first.close()
            again = SqliteFrontier(db)
            events = [e async for e in Crawler(client, limits, frontier=again).crawl([u("/")])]
            outcomes = again.outcomes()
            again.close()
        # "/" finished before the stop: its outcome is replayed (for the cycle's page counts)
        # but it is not fetched again (the recorder check below).
        fetched = [e.url for e in events if isinstance(e, PageFetched)]
        assert sorted(fetched) == sorted([u("/"), u("/a"), u("/b")])
        # the image found before the stop is emitted again: its analysis may not have run
        assert {e.url for e in events if isinstance(e, ImageFound)} == {u("/i.png")}
        assert web.recorder.paths("site-a.test").count("/") == 1
        assert set(outcomes.values()) == {"ok"}
        # a finished run is not resumed: the next crawl starts afresh
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            third = SqliteFrontier(db)
            events = [e async for e in Crawler(client, limits, frontier=third).crawl([u("/")])]
            third.close()
        assert sum(isinstance(e, PageFetched) for e in events) == 3


async def test_data_uris_are_emitted_and_never_stored(tmp_path: Path) -> None:
    data = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", html(f'<img src="{data}"><img src="data:text/plain,x">'))
        limits = CrawlLimits()
        db = tmp_path / "f.sqlite3"
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            frontier = SqliteFrontier(db)
            crawler = Crawler(client, limits, frontier=frontier)
            events = [e async for e in crawler.crawl([web.url("site-a.test", "/")])]
            frontier.close()
        images = [e for e in events if isinstance(e, ImageFound)]
        assert [(e.url, e.host) for e in images] == [(data, "site-a.test")]
        assert crawler.stats.data_uris == 2
        assert b"R0lGOD" not in db.read_bytes()


@pytest.mark.parametrize("videos", [True, False])
async def test_video_links_are_counted_and_sent_when_on(tmp_path: Path, videos: bool) -> None:
    # Issue 13: videos and manifests on a page are counted; with crawl.videos (default) each
    # video is also emitted (media "video") for the function; manifests never are.
    with synthetic_web() as web:
        page = (
            '<video src="a.mp4" poster="p.png"><source src="b.webm"></video><a href="s.m3u8">s</a>'
        )
        web.a.add("site-a.test", "/", html(page))
        limits = CrawlLimits(videos=videos)
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            frontier = SqliteFrontier(tmp_path / "f.sqlite3")
            crawler = Crawler(client, limits, frontier=frontier)
            events = [e async for e in crawler.crawl([web.url("site-a.test", "/")])]
            frontier.close()
        found = [(e.url.rsplit("/", 1)[1], e.media) for e in events if isinstance(e, ImageFound)]
        sent = [("a.mp4", "video"), ("b.webm", "video")] if videos else []
        assert found == [("p.png", "image"), *sent]  # the poster is an image
        assert (crawler.stats.video_links, crawler.stats.manifest_links) == (2, 1)
        # The crawler itself never reads a video.
        assert not [p for p in web.recorder.paths("site-a.test") if p.endswith((".mp4", ".webm"))]


# --------------------------------------------------------------------------- wiring


def test_override_audit_hook_writes_the_audit_log(tmp_path: Path) -> None:
    from node import audit
    from node.crawl.setup import audit_hook
    from node.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}")
    audit_hook(engine)("blocked.example", "crawl.robots_override_hosts")
    [entry] = audit.entries(engine, "crawl.")
    assert (entry.action, entry.subject) == ("crawl.robots_override", "host:blocked.example")


def test_recrawl_entries_become_scheduler_jobs(tmp_path: Path) -> None:
    from node.config import NodeSettings
    from node.db import make_engine
    from node.scheduler import build_scheduler

    settings = NodeSettings(  # type: ignore[call-arg]
        node_id="node-rc",
        country="DE",
        data_dir=tmp_path,
        seeds=["http://a.test/"],
        crawl={"recrawl": [{"url": "http://hot.test/", "every_minutes": 15}]},
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'n.sqlite3'}")
    scheduler = build_scheduler(settings, engine)
    job = scheduler.get_job("recrawl:http://hot.test/")
    assert job is not None
    assert job.trigger.interval.total_seconds() == 15 * 60


# --------------------------------------------------------------------------- properties

_URLS = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda host, path, query: f"http://{host}/{path}?{query}",
        st.from_regex(r"[a-z0-9]{1,10}(\.[a-z]{2,5}){1,3}", fullmatch=True),
        st.text(max_size=20),
        st.text(max_size=20),
    ),
)


@given(_URLS)
def test_canonical_keys_are_stable_and_scope_never_raises(raw: str) -> None:
    from node.crawl.links import canonical_key, normalize_url

    url = normalize_url(raw)
    if url is None:
        return
    assert normalize_url(url) == url
    key = canonical_key(url)
    assert canonical_key(key) == key
    scope = Scope(ScopeRules(mode="domain", external_hops=1, exclude=(r"\.pdf$",)))
    verdict = scope.judge(url, "example.co.uk", 0)
    assert verdict.follow or verdict.reason in {"offsite", "excluded"}
