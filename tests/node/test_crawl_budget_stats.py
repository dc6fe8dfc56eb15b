"""The crawler's counters behind `libra node crawl`'s summary (issue 17): which budget left pages
out (max_pages or max_pages_per_site), and one page per failure reason."""

from __future__ import annotations

from node.crawl.budget import describe_budget
from node.crawl.crawler import CrawlLimits, CrawlStats

from .test_crawl_kit import Route, html, synthetic_web
from .test_crawl_site import crawl


async def test_a_per_site_budget_is_not_counted_as_max_pages() -> None:
    with synthetic_web() as web:
        links = "".join(f'<a href="/p{n}.html">{n}</a>' for n in range(10))
        web.a.add("site-c.test", "/", html(links))
        for n in range(10):
            web.a.add("site-c.test", f"/p{n}.html", html("<p>leaf</p>"))
        limits = CrawlLimits(max_pages=100, max_pages_per_site=3)
        _events, crawler = await crawl(web, [web.url("site-c.test", "/")], limits)
        stats = crawler.stats
        assert (stats.pages_scheduled, stats.skipped_budget, stats.skipped_max_pages) == (3, 8, 0)
        assert describe_budget(stats, 100, 3) == (
            "reached (max_pages_per_site 3): 8 more page(s) found, not crawled"
        )


async def test_max_pages_left_out_pages_are_counted_apart() -> None:
    with synthetic_web() as web:
        links = "".join(f'<a href="/p{n}.html">{n}</a>' for n in range(10))
        web.a.add("site-c.test", "/", html(links))
        for n in range(10):
            web.a.add("site-c.test", f"/p{n}.html", html("<p>leaf</p>"))
        _events, crawler = await crawl(web, [web.url("site-c.test", "/")], CrawlLimits(max_pages=4))
        assert (crawler.stats.skipped_budget, crawler.stats.skipped_max_pages) == (7, 7)


async def test_each_failure_reason_keeps_its_first_page() -> None:
    with synthetic_web() as web:
        web.a.add(
            "site-c.test",
            "/",
            html('<a href="/a.html">a</a><a href="/b.html">b</a><a href="/c.txt">c</a>'),
        )
        web.a.add("site-c.test", "/c.txt", Route(body=b"plain", content_type="text/plain"))
        _events, crawler = await crawl(web, [web.url("site-c.test", "/")], CrawlLimits())
        stats = crawler.stats
        assert stats.failures == {"http_404": 2, "not_html": 1}
        assert stats.failure_examples == {
            "http_404": web.url("site-c.test", "/a.html"),
            "not_html": web.url("site-c.test", "/c.txt"),
        }


def test_a_budget_not_reached_says_how_much_was_used() -> None:
    stats = CrawlStats(pages_scheduled=38)
    assert describe_budget(stats, 50, 0) == "not reached (38 of max_pages 50)"
