"""The crawl: fetch pages politely within scope, find image URLs (crawler, robots,
sitemaps, links, scope, politeness, frontier backends, the shared Redis worker)."""
