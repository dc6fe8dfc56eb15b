"""Crawler benchmark (issue 5): ours vs Scrapy on the same loopback synthetic web, same run.

The web: ``--hosts`` hosts (default 100), each its own loopback address 127.0.1.N on one port,
``--pages`` pages per host (default 200: 20,000 pages), served by our own asyncio HTTP server in
two processes. Every page links the next page and 4 others of its host, plus 2 images (never
fetched by either crawler) and one off-site link. Each host has a robots.txt that disallows
/private/ (linked from every 50th page).

Both crawlers run with the same politeness: robots.txt obeyed, per-host concurrency 1, no delay,
64 requests in flight overall, no depth limit, same-host scope. Each runs in its own process;
CPU is that process's user+sys time (os.wait4). Run:

    .venv/bin/python benchmarks/bench_crawler.py            # full size, ~2-4 min
    .venv/bin/python benchmarks/bench_crawler.py --hosts 10 --pages 50   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PORT_HINT = 0
CONCURRENCY = 64


def host_ip(n: int) -> str:
    return f"127.0.1.{n + 1}"


def page_body(host: str, port: int, index: int, pages: int) -> bytes:
    links = {
        index + 1,
        (index * 7 + 3) % pages,
        (index * 13 + 5) % pages,
        (index * 31 + 11) % pages,
    }
    links.discard(index)
    anchors = "".join(
        f'<li><a href="/p{m}.html">page {m}</a></li>' for m in sorted(links) if m < pages
    )
    if index % 50 == 0:
        anchors += '<li><a href="/private/secret.html">private</a></li>'
    text = "<p>" + ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20) + "</p>"
    return (
        f"<!doctype html><html><head><title>{host} {index}</title>"
        f'<meta property="og:image" content="/img/og{index}.jpg"></head><body>'
        f'<h1>Page {index}</h1><img src="/img/{index}.png" alt="x">'
        f'<a href="http://offsite.invalid/">elsewhere</a><ul>{anchors}</ul>{text}</body></html>'
    ).encode()


_PNGS: dict[int, bytes] = {}


def png(index: int) -> bytes:
    """One of 64 small distinct pictures (64 x 48 PNG) for page ``index``."""
    key = index % 64
    if key not in _PNGS:
        import io

        from PIL import Image, ImageDraw

        image = Image.new("RGB", (64, 48), ((key * 37) % 256, (key * 91) % 256, (key * 53) % 256))
        draw = ImageDraw.Draw(image)
        draw.rectangle((key % 32, key % 24, key % 32 + 20, key % 24 + 16), fill=(255, 255, 255))
        out = io.BytesIO()
        image.save(out, "PNG")
        _PNGS[key] = out.getvalue()
    return _PNGS[key]


async def _serve(ips: list[str], port: int, pages: int) -> None:
    robots = b"User-agent: *\nDisallow: /private/\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local = writer.get_extra_info("sockname")[0]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if path == "/robots.txt":
                    status, ctype, body = b"200 OK", b"text/plain", robots
                elif path.startswith("/p") and path.endswith(".html"):
                    status, ctype = b"200 OK", b"text/html; charset=utf-8"
                    body = page_body(local, port, int(path[2:-5]), pages)
                elif path.startswith("/img/") and path.endswith(".png") and path[5:-4].isdigit():
                    # Crawlers never fetch it; the full-cycle benchmark's function does.
                    status, ctype, body = b"200 OK", b"image/png", png(int(path[5:-4]))
                else:
                    status, ctype, body = b"404 Not Found", b"text/html", b"<html>404</html>"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: "
                    + ctype
                    + b"\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    servers = [await asyncio.start_server(handle, ip, port, backlog=512) for ip in ips]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def _server_process(ips: list[str], port: int, pages: int) -> None:
    asyncio.run(_serve(ips, port, pages))


def start_web(hosts: int, pages: int, port: int) -> list[multiprocessing.Process]:
    """The synthetic web in two server processes (terminate them when done)."""
    ips = [host_ip(n) for n in range(hosts)]
    servers = [
        multiprocessing.Process(target=_server_process, args=(ips[i::2], port, pages), daemon=True)
        for i in range(2)
    ]
    for server in servers:
        server.start()
    time.sleep(1.0)
    return servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((host_ip(0), 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- ours


async def _ours(
    seeds: list[str], port: int, total: int, frontier_kind: str, db: str
) -> dict[str, float]:
    from node.crawl.crawler import Crawler, CrawlLimits, ImageFound, PageFailed, PageFetched
    from node.crawl.frontier import MemoryFrontier
    from node.crawl.frontier.sqlite import SqliteFrontier
    from node.net import make_client
    from protocol.lab import LabNetwork

    lab = LabNetwork(allow_ranges=["127.0.0.0/8"], allow_ports=[port])
    limits = CrawlLimits(
        max_pages=total + 1000,
        max_depth=100_000,
        concurrency=CONCURRENCY,
        per_host_concurrency=1,
        min_delay_s=0.0,
        obey_robots=True,
        sitemaps=False,
    )
    frontier = SqliteFrontier(Path(db)) if frontier_kind == "sqlite" else MemoryFrontier()
    counts = {"pages": 0, "failed": 0, "images": 0}
    async with make_client(
        lab, timeout=30, user_agent=limits.user_agent, max_connections=256
    ) as client:
        crawler = Crawler(client, limits, frontier=frontier)
        async for event in crawler.crawl(seeds):
            if isinstance(event, PageFetched):
                counts["pages"] += 1
            elif isinstance(event, PageFailed):
                counts["failed"] += 1
            elif isinstance(event, ImageFound):
                counts["images"] += 1
    frontier.close()
    return counts


def run_ours(seeds: list[str], port: int, total: int, frontier_kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        counts = asyncio.run(_ours(seeds, port, total, frontier_kind, f"{tmp}/bench.sqlite3"))
        counts["wall_s"] = time.perf_counter() - started
    print(json.dumps(counts))


# ----------------------------------------------------------------------------- scrapy


def run_scrapy(seeds: list[str]) -> None:
    import scrapy
    from scrapy.crawler import CrawlerProcess

    counts = {"pages": 0, "failed": 0, "images": 0}

    class Bench(scrapy.Spider):  # type: ignore[misc]
        name = "bench"

        async def start(self):  # type: ignore[no-untyped-def]
            # dont_filter=False: a seed linked back later is not fetched twice (as in ours).
            for url in seeds:
                yield scrapy.Request(url, callback=self.parse, dont_filter=False)

        def parse(self, response):  # type: ignore[no-untyped-def]
            counts["pages"] += 1
            for src in response.css("img::attr(src), meta[property='og:image']::attr(content)"):
                counts["images"] += 1
                _ = response.urljoin(src.get())
            here = response.url.split("/", 3)[2]
            for href in response.css("a::attr(href)").getall():
                url = response.urljoin(href)
                if url.split("/", 3)[2] == here:
                    yield scrapy.Request(url, callback=self.parse)

    process = CrawlerProcess(
        settings={
            "ROBOTSTXT_OBEY": True,
            "CONCURRENT_REQUESTS": CONCURRENCY,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 1,
            "DOWNLOAD_DELAY": 0,
            "RANDOMIZE_DOWNLOAD_DELAY": False,
            "AUTOTHROTTLE_ENABLED": False,
            "DEPTH_LIMIT": 0,
            "LOG_LEVEL": "ERROR",
            "TELNETCONSOLE_ENABLED": False,
            "COOKIES_ENABLED": False,
            "RETRY_ENABLED": True,
            "REACTOR_THREADPOOL_MAXSIZE": 10,
            "USER_AGENT": "LIBRA-bench (+https://libra.invalid/bot)",
        }
    )
    started = time.perf_counter()
    process.crawl(Bench)
    process.start()
    print(json.dumps({**counts, "wall_s": time.perf_counter() - started}))


# ----------------------------------------------------------------------------- driver


def measure(args: list[str], *, script: bool = False) -> dict[str, Any]:
    """Run a role of this script (or, with ``script``, of the script ``args[0]``) in its own
    process; its printed counts with its CPU time (os.wait4)."""
    command = [sys.executable, *args] if script else [sys.executable, __file__, *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{args[0]} run failed ({status})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["pages_per_s"] = result["pages"] / result["wall_s"]
    result["cpu_ms_per_page"] = 1000 * result["cpu_s"] / max(1, result["pages"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument(
        "--scrapy-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run Scrapy before ours (default) or after",
    )
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--frontier", default="sqlite", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [f"http://{host_ip(n)}:{args.port}/p0.html" for n in range(args.hosts)]
    total = args.hosts * args.pages
    if args.role == "ours":
        run_ours(seeds, args.port, total, args.frontier)
        return
    if args.role == "scrapy":
        run_scrapy(seeds)
        return

    port = free_port()
    servers = start_web(args.hosts, args.pages, port)
    common = ["--hosts", str(args.hosts), "--pages", str(args.pages), "--port", str(port)]
    try:
        runs = {
            "scrapy": ["--role", "scrapy", *common],
            "ours (sqlite frontier)": ["--role", "ours", "--frontier", "sqlite", *common],
            "ours (memory frontier)": ["--role", "ours", "--frontier", "memory", *common],
        }
        # The first crawl against fresh servers is markedly slower, whoever runs it (seen in
        # docs/benchmarks.md), so an untimed warm-up crawl goes first; then Scrapy first
        # (--scrapy-first, default) or last.
        measure(runs["ours (memory frontier)"])
        order = list(runs) if args.scrapy_first else [*list(runs)[1:], "scrapy"]
        results = {name: measure(runs[name]) for name in order}
    finally:
        for server in servers:
            server.terminate()
    print(
        f"synthetic web: {args.hosts} hosts x {args.pages} pages = {total} pages "
        "(+1 disallowed link per 50)"
    )
    print(f"{'crawler':<24}{'pages':>8}{'wall s':>9}{'pages/s':>10}{'CPU s':>8}{'CPU ms/page':>13}")
    for name, r in results.items():
        print(
            f"{name:<24}{int(r['pages']):>8}{r['wall_s']:>9.1f}{r['pages_per_s']:>10.0f}"
            f"{r['cpu_s']:>8.1f}{r['cpu_ms_per_page']:>13.2f}"
        )
    base = results["scrapy"]
    for name in ("ours (sqlite frontier)", "ours (memory frontier)"):
        r = results[name]
        print(
            f"{name}: {r['pages_per_s'] / base['pages_per_s']:.2f}x Scrapy pages/s, "
            f"{r['cpu_ms_per_page'] / base['cpu_ms_per_page']:.2f}x Scrapy CPU per page"
        )


if __name__ == "__main__":
    main()
