"""The crawler against a synthetic site on loopback: every page form, image form and failure."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from node.crawl.crawler import Crawler, CrawlEvent, CrawlLimits, ImageFound, PageFailed, PageFetched
from node.net import make_client

from .test_crawl_kit import BIG_BODY, PNG_MAGIC, Route, Web, html, synthetic_web

ROBOTS = b"""# the group for our product token wins over '*' for us
User-agent: *
Disallow: /private/

User-agent: LIBRA-node
Disallow: /members/
"""


def build_site_a(web: Web) -> None:
    a = web.a
    host = "site-a.test"
    b_root = web.url("site-b.test", "/")
    tw = web.url("site-b.test", "/img/tw.png")
    a.add(host, "/robots.txt", Route(content_type="text/plain", body=ROBOTS))
    a.add(
        host,
        "/",
        html(
            f"""<!doctype html><html><head><title>A</title>
<meta property="og:image" content="/img/og.jpg">
<meta name="twitter:image" content="{tw}">
</head><body>
<a href="/about.html">about</a> <a href="gallery/">gallery</a>
<a href="/missing.html">broken</a> <a href="/members/x.html">members</a>
<a href="/private/ok.html">private</a> <a href="/old">moved</a> <a href="/loop">loop</a>
<a href="/away">offsite redirect</a> <a href="/doc.pdf">pdf</a>
<a href="/photo.jpg">photo link</a> <a href="/page.html">disguised</a>
<a href="/fake.html">disguised 2</a> <a href="{b_root}">other site</a>
<a href="mailto:x@example.invalid">mail</a> <a href="javascript:void(0)">js</a>
<a href="/about.html#team">same page, other fragment</a>
<img src="/img/a.png" srcset="/img/a-2x.png 2x, /img/a-3x.png 3x">
<img src="data:image/png;base64,iVBORw0KGgo=">
<div style="color: red; background-image: url('/img/bg.gif')">
<p>unclosed <b>markup <table><tr><td>cell
</body>"""
        ),
    )
    a.add(
        host,
        "/gallery/",
        html(
            """<html><head><base href="/media/"></head><body>
<picture><source srcset="p1.webp 1x, p2.webp 2x" type="image/webp"><img src="p.jpg"></picture>
<img src="/img/a.png"><a href="../about.html">up</a><a href="deep.html">deep</a>"""
        ),
    )
    a.add(host, "/media/deep.html", html('<img src="deep.bmp">'))
    # windows-1252 declared only in <meta>: 'é' must decode as such, not as U+FFFD.
    a.add(
        host,
        "/about.html",
        Route(
            content_type="text/html",
            body='<meta charset="windows-1252"><img src="café.png">'.encode("cp1252"),
        ),
    )
    a.add(host, "/old", Route(status=301, headers={"Location": "/new.html"}))
    a.add(host, "/new.html", html('<img src="/img/new.png"><a href="/">home</a>'))
    a.add(host, "/loop", Route(status=302, headers={"Location": "/loop2"}))
    a.add(host, "/loop2", Route(status=302, headers={"Location": "/loop"}))
    a.add(host, "/away", Route(status=302, headers={"Location": b_root}))
    a.add(host, "/doc.pdf", Route(content_type="application/pdf", body=b"%PDF-1.4 not html"))
    a.add(host, "/private/ok.html", html("<p>allowed for our agent</p>"))
    a.add(host, "/members/x.html", html("<p>never fetched</p>"))
    # Images at page-looking URLs, 16 MB each: the crawler must stop after the first bytes.
    a.add(host, "/page.html", Route(content_type="image/png", body=PNG_MAGIC, big=BIG_BODY))
    a.add(host, "/fake.html", Route(content_type="text/html", body=PNG_MAGIC, big=BIG_BODY))


def site_a(web: Web) -> Callable[[str], str]:
    def url(path: str) -> str:
        return web.url("site-a.test", path)

    return url


async def crawl(
    web: Web, seeds: list[str], limits: CrawlLimits
) -> tuple[list[CrawlEvent], Crawler]:
    async with make_client(web.lab, timeout=5.0, user_agent=limits.user_agent) as client:
        crawler = Crawler(client, limits)
        events = [event async for event in crawler.crawl(seeds)]
    return events, crawler


async def test_full_site() -> None:
    with synthetic_web() as web:
        build_site_a(web)
        u = site_a(web)
        events, crawler = await crawl(web, [u("/")], CrawlLimits())

        fetched = {e.url: e for e in events if isinstance(e, PageFetched)}
        failed = {e.url: e.reason for e in events if isinstance(e, PageFailed)}
        images = {e.url: e for e in events if isinstance(e, ImageFound)}

        assert set(fetched) == {
            u("/"),
            u("/gallery/"),
            u("/media/deep.html"),
            u("/about.html"),
            u("/old"),  # reported under the scheduled URL; /new.html is its content
            u("/private/ok.html"),
        }
        assert {url: (e.depth, e.status, e.host) for url, e in fetched.items()}[u("/")] == (
            0,
            200,
            "site-a.test",
        )
        assert fetched[u("/media/deep.html")].depth == 2
        assert failed == {
            u("/missing.html"): "http_404",
            u("/members/x.html"): "robots_disallowed",
            u("/loop"): "too_many_redirects",
            u("/away"): "redirect_offsite",
            u("/doc.pdf"): "not_html",
        }
        # An inline data: image goes to the function (which decodes it), under the page host.
        data_uri = "data:image/png;base64,iVBORw0KGgo="
        assert images[data_uri].host == "site-a.test"
        assert set(images) - {data_uri} == {
            u("/img/og.jpg"),
            web.url("site-b.test", "/img/tw.png"),
            u("/photo.jpg"),
            u("/page.html"),
            u("/fake.html"),
            u("/img/a.png"),
            u("/img/a-2x.png"),
            u("/img/a-3x.png"),
            u("/img/bg.gif"),
            u("/media/p1.webp"),
            u("/media/p2.webp"),
            u("/media/p.jpg"),
            u("/media/deep.bmp"),
            u("/caf%C3%A9.png"),
            u("/img/new.png"),
        }
        # Each event once.
        assert len(events) == len(fetched) + len(failed) + len(images)
        assert images[u("/img/a.png")].page_url == u("/")
        assert images[u("/media/p.jpg")].page_url == u("/gallery/")
        assert images[u("/img/new.png")].page_url == u("/new.html")
        assert images[u("/page.html")].page_url == u("/")  # its referrer
        assert images[web.url("site-b.test", "/img/tw.png")].host == "site-b.test"
        assert crawler.stats.data_uris == 1
        assert crawler.stats.offsite_links == 1
        assert crawler.stats.robots_fetched == 1

        requested = web.recorder.paths("site-a.test")
        assert requested.count("/robots.txt") == 1
        assert requested[0] == "/robots.txt"  # before the first page
        assert requested.count("/new.html") == 1
        # No image URL found in HTML was ever requested, nor the robots-disallowed page.
        for path in requested:
            assert not path.startswith(("/img/", "/media/p", "/members/")), path
        assert "/photo.jpg" not in requested
        assert "/media/deep.bmp" not in requested
        assert web.recorder.paths("site-b.test") == []


async def test_images_at_page_urls_are_not_read() -> None:
    with synthetic_web() as web:
        build_site_a(web)
        u = site_a(web)
        seeds = [u("/page.html"), u("/fake.html")]
        events, _ = await crawl(web, seeds, CrawlLimits())
        assert {e.url for e in events if isinstance(e, ImageFound)} == set(seeds)
        assert not [e for e in events if not isinstance(e, ImageFound)]
        for path in ("/page.html", "/fake.html"):
            assert web.recorder.finished[path].wait(10)
            written = web.recorder.written[path]
            # The server could push at most socket buffers past what the client read.
            assert written < BIG_BODY // 8, (path, written)


async def test_two_sites_and_robots_outcomes() -> None:
    with synthetic_web() as web:
        # site-b: no robots.txt (404) -> everything allowed.
        web.b.add("site-b.test", "/", html('<a href="/p.html">p</a><img src="/i.png">'))
        web.b.add("site-b.test", "/p.html", html("<p>p</p>"))
        # site-c: robots.txt answers 500 -> the whole origin is off limits for this crawl.
        web.a.add("site-c.test", "/robots.txt", Route(status=500, body=b"oops"))
        web.a.add("site-c.test", "/", html("<p>never fetched</p>"))
        seeds = [web.url("site-b.test", "/"), web.url("site-c.test", "/")]
        events, _ = await crawl(web, seeds, CrawlLimits())
        fetched = {e.url for e in events if isinstance(e, PageFetched)}
        failed = {e.url: e.reason for e in events if isinstance(e, PageFailed)}
        assert fetched == {web.url("site-b.test", "/"), web.url("site-b.test", "/p.html")}
        assert failed == {web.url("site-c.test", "/"): "robots_disallowed"}
        assert web.recorder.paths("site-c.test") == ["/robots.txt"]


@pytest.mark.parametrize("obey", [True, False])
async def test_obey_robots_switch(obey: bool) -> None:
    with synthetic_web() as web:
        web.a.add(
            "site-a.test",
            "/robots.txt",
            Route(content_type="text/plain", body=b"User-agent: *\nDisallow: /\n"),
        )
        web.a.add("site-a.test", "/", html("<p>home</p>"))
        limits = CrawlLimits(obey_robots=obey)
        events, _ = await crawl(web, [web.url("site-a.test", "/")], limits)
        if obey:
            assert events == [
                PageFailed(web.url("site-a.test", "/"), "site-a.test", "robots_disallowed")
            ]
            assert web.recorder.paths("site-a.test") == ["/robots.txt"]
        else:
            url = web.url("site-a.test", "/")
            # Served by site-a's address (issue 16: pages are attributed by it).
            assert events == [PageFetched(url, "site-a.test", 200, 0, "127.0.0.1", "site-a.test")]
            assert web.recorder.paths("site-a.test") == ["/"]
