"""What the crawl takes from the node's settings: its limits and where its frontier lives
(used by the in-process crawl, the Redis workers and the metrics alike)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from node.config import NodeSettings
from node.crawl.crawler import CrawlLimits

FRONTIER_FILE_NAME = "frontier.sqlite3"


def limits_from(settings: NodeSettings) -> CrawlLimits:
    c = settings.crawl
    return CrawlLimits(
        max_pages=c.max_pages,
        max_pages_per_site=c.max_pages_per_site,
        max_depth=c.max_depth,
        concurrency=c.concurrency,
        per_host_concurrency=c.per_host_concurrency,
        timeout_s=c.timeout_s,
        max_html_bytes=c.max_html_bytes,
        max_redirects=c.max_redirects,
        user_agent=c.user_agent,
        obey_robots=c.obey_robots,
        robots_override_hosts=tuple(c.robots_override_hosts),
        min_delay_s=c.min_delay_s,
        max_crawl_delay_s=c.max_crawl_delay_s,
        backoff_base_s=c.backoff_base_s,
        max_backoff_s=c.max_backoff_s,
        slow_response_s=c.slow_response_s,
        retries=c.retries,
        scope=c.scope,
        external_hops=c.external_hops,
        include=tuple(c.include),
        exclude=tuple(c.exclude),
        sitemaps=c.sitemaps,
        videos=c.videos,
    )


def frontier_path(settings: NodeSettings) -> Path:
    """The node's own SQLite file when it uses SQLite, else <data_dir>/frontier.sqlite3."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database)
    return settings.data_dir / FRONTIER_FILE_NAME
