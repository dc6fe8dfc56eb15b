"""Whether a page budget stopped a crawl, in words for the operator (`libra node crawl`, the
scheduler's cycle lines of `libra node serve`).

The crawler never queues a link past ``crawl.max_pages`` (or ``max_pages_per_site``): it counts
the distinct in-scope links it refused (CrawlStats.skipped_budget, of which skipped_max_pages
hit max_pages). Those are the pages left: a lower bound, since pages never fetched were never
read for more links. A budget reached is not an error: the cycle did what it was allowed to.
"""

from __future__ import annotations

from node.crawl.crawler import CrawlStats


def budget_reached(stats: CrawlStats) -> bool:
    return stats.skipped_budget > 0


def describe_budget(stats: CrawlStats, max_pages: int, max_pages_per_site: int) -> str:
    """``reached (max_pages 50): 102 more page(s) found, not crawled`` or
    ``not reached (38 of max_pages 50)``."""
    if not budget_reached(stats):
        return f"not reached ({stats.pages_scheduled} of max_pages {max_pages})"
    which = []
    if stats.skipped_max_pages:
        which.append(f"max_pages {max_pages}")
    if stats.skipped_budget > stats.skipped_max_pages:
        which.append(f"max_pages_per_site {max_pages_per_site}")
    return f"reached ({', '.join(which)}): {stats.skipped_budget} more page(s) found, not crawled"
