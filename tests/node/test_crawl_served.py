"""Issue 16: every fetched page names the address that served it (the pinned connection), also
when a resumed crawl replays it from the frontier, so the cycle attributes pages like sightings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.crawl.crawler import Crawler, CrawlLimits, PageFetched
from node.crawl.frontier import FrontierItem, ImageRecord, Served
from node.crawl.frontier.sqlite import SqliteFrontier
from node.net import make_client

from .test_crawl_kit import html, synthetic_web


async def test_fetched_pages_name_their_server_address() -> None:
    with synthetic_web() as web:
        web.a.add("site-a.test", "/", html('<a href="/two">2</a>'))
        web.a.add("site-a.test", "/two", html("two"))
        web.b.add("site-b.test", "/", html("b"))
        limits = CrawlLimits()
        seeds = [web.url("site-a.test", "/"), web.url("site-b.test", "/")]
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            events = [e async for e in Crawler(client, limits).crawl(seeds)]
    fetched = sorted(
        (e.url, e.server_ip, e.served_host) for e in events if isinstance(e, PageFetched)
    )
    assert fetched == [
        (web.url("site-a.test", "/"), "127.0.0.1", "site-a.test"),
        (web.url("site-a.test", "/two"), "127.0.0.1", "site-a.test"),
        (web.url("site-b.test", "/"), "127.0.0.2", "site-b.test"),
    ]


async def test_a_resumed_crawl_replays_who_served_each_page(tmp_path: Path) -> None:
    with synthetic_web() as web:
        u = lambda p: web.url("site-b.test", p)  # noqa: E731
        web.b.add("site-b.test", "/", html('<a href="/a">a</a>'))
        web.b.add("site-b.test", "/a", html("a"))
        # One request at a time with a pause, so the stop lands before "/a" is fetched.
        limits = CrawlLimits(per_host_concurrency=1, min_delay_s=0.5)
        db = tmp_path / "node.sqlite3"
        async with make_client(web.lab, timeout=5, user_agent=limits.user_agent) as client:
            first = SqliteFrontier(db)
            gen = Crawler(client, limits, frontier=first).crawl([u("/")])
            async for event in gen:
                if isinstance(event, PageFetched):
                    break
            await gen.aclose()
            first.close()
            assert "/a" not in web.recorder.paths("site-b.test"), "stopped too late"
            again = SqliteFrontier(db)
            events = [e async for e in Crawler(client, limits, frontier=again).crawl([u("/")])]
            again.close()
    assert web.recorder.paths("site-b.test").count("/") == 1  # replayed, not fetched again
    fetched = {e.url: (e.server_ip, e.served_host) for e in events if isinstance(e, PageFetched)}
    assert fetched == {u("/"): ("127.0.0.2", "site-b.test"), u("/a"): ("127.0.0.2", "site-b.test")}


def test_an_older_frontier_table_gains_the_served_columns(tmp_path: Path) -> None:
    db = tmp_path / "node.sqlite3"
    with sqlite3.connect(db) as conn:  # the table as nodes before issue 16 made it
        conn.execute(
            "CREATE TABLE frontier_url (run_id INTEGER NOT NULL, key TEXT NOT NULL, "
            "url TEXT NOT NULL, kind TEXT NOT NULL, depth INTEGER NOT NULL, site TEXT NOT NULL, "
            "hops INTEGER NOT NULL, referrer TEXT NOT NULL, state TEXT NOT NULL, outcome TEXT, "
            "done_at REAL, PRIMARY KEY (run_id, key))"
        )
    frontier = SqliteFrontier(db)
    item = FrontierItem("http://a.test/", 0, "a.test")
    frontier.start("run", [item])
    frontier.add("a", item)
    frontier.complete("a", "ok", [], [], (), Served("127.0.1.5", "a.test"))
    frontier.close()
    again = SqliteFrontier(db)
    again.start("run", [item])
    assert again.resumed_outcomes() == [(item, "ok", Served("127.0.1.5", "a.test"))]
    again.close()


def test_a_resumed_run_re_emits_its_videos_as_videos(tmp_path: Path) -> None:
    """Issue 13: images of done pages are re-emitted after a restart; a video stays a video
    (the cycle counts and matches it as one), also in a frontier table made before the column."""
    db = tmp_path / "node.sqlite3"
    with sqlite3.connect(db) as conn:  # frontier_image as nodes before issue 13 made it
        conn.execute(
            "CREATE TABLE frontier_image (run_id INTEGER NOT NULL, url TEXT NOT NULL, "
            "page_url TEXT NOT NULL, host TEXT NOT NULL, PRIMARY KEY (run_id, url))"
        )
    item = FrontierItem("http://a.test/", 0, "a.test")
    found = [
        ImageRecord("http://a.test/v.mp4", "http://a.test/", "a.test", "video"),
        ImageRecord("http://a.test/i.png", "http://a.test/", "a.test"),
    ]
    frontier = SqliteFrontier(db)
    frontier.start("run", [item])
    frontier.add("a", item)
    frontier.complete("a", "ok", [], found, (), None)
    frontier.close()
    again = SqliteFrontier(db)
    again.start("run", [item])
    assert again.resumed_images() == found
    again.close()
