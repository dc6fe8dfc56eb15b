"""The user's path (issue 17): a whole crawl cycle, images included, against Scrapy's crawl alone.

The web of benchmarks/bench_crawler.py (``--hosts`` x ``--pages`` pages on loopback, one small
PNG per page, served by two server processes). A real remote-hash function
(`libra function serve`, lab mode, signed requests, its default process isolation) and the
node's own cycle (`node.cycle.run`: crawler -> function -> match -> attribute -> record in the
node's SQLite database, as `libra node crawl` runs it), once with one request per image
(``batch_size`` 1, before issue 17) and once with batches (the default), against Scrapy's
crawl-only pages/s in the same run (Scrapy runs just before and just after the batched cycle,
and the ratio is to the mean of the two: the load of a shared machine moves within minutes).
CPU: the node process and the function process (with its decode workers), each from os.wait4
when it ends.

    .venv/bin/python benchmarks/bench_node_cycle.py                  # 100 x 200, ~8-16 min
    .venv/bin/python benchmarks/bench_node_cycle.py --hosts 20 --pages 50   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_crawler import CONCURRENCY, ROOT, free_port, host_ip, measure, start_web

KEY_SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a fixed benchmark-only key


async def _cycle(
    seeds: list[str], port: int, total: int, function_url: str, batch: int
) -> dict[str, Any]:
    from node.attribution.attributor import Attributor
    from node.crawl.crawler import Crawler, CrawlLimits
    from node.crawl.frontier.sqlite import SqliteFrontier
    from node.cycle import run
    from node.db import make_engine
    from node.dispatch import FunctionClient
    from node.matching.matcher import MatchIndex
    from node.net import make_client
    from protocol.keys import NodeKey
    from protocol.lab import LabNetwork
    from protocol.request_auth import RequestSigner

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
    signer = RequestSigner("bench", NodeKey.from_seed_b64(KEY_SEED).signing_key)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/node.sqlite3")
        frontier = SqliteFrontier(Path(tmp) / "node.sqlite3")
        started = time.perf_counter()
        async with (
            make_client(lab, timeout=30, user_agent=limits.user_agent, max_connections=256) as web,
            FunctionClient(function_url, auth=signer, concurrency=8, batch_size=batch) as function,
        ):
            with Attributor() as attributor:
                summary = await run(
                    engine=engine,
                    crawler=Crawler(web, limits, frontier=frontier),
                    function=function,
                    index=MatchIndex([]),
                    attributor=attributor,
                    seeds=seeds,
                    concurrency=8,
                    batch_size=batch,
                )
        wall = time.perf_counter() - started
        frontier.close()
    return {
        "pages": summary.pages_fetched,
        "images": summary.images_hashed,
        "failed": summary.analysis_failures,
        "failures": dict(summary.image_failures),
        "wall_s": wall,
    }


def _start_function(port: int, web_port: int, directory: Path) -> subprocess.Popen[bytes]:
    from protocol.keys import NodeKey

    lab = directory / "lab.toml"
    lab.write_text(f'allow_ranges = ["127.0.0.0/8"]\nallow_ports = [{web_port}]\n')
    key = NodeKey.from_seed_b64(KEY_SEED)
    env = {
        **os.environ,
        "LIBRA_FUNCTION_AUTHORIZED_KEYS": json.dumps({"bench": key.public_key_b64}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "libra", "function", "serve", "--lab", str(lab), "--host",
         "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(600):  # up to 60 s for the first start on a loaded machine
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the function did not start")


def _stop(proc: subprocess.Popen[bytes]) -> float:
    """Stop the function; its CPU seconds with its reaped decode workers."""
    proc.send_signal(signal.SIGTERM)
    _pid, _status, usage = os.wait4(proc.pid, 0)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--function-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [f"http://{host_ip(n)}:{args.port}/p0.html" for n in range(args.hosts)]
    total = args.hosts * args.pages
    if args.role == "cycle":
        counts = asyncio.run(_cycle(seeds, args.port, total, args.function_url, args.batch))
        print(json.dumps(counts))
        return

    port = free_port()
    servers = start_web(args.hosts, args.pages, port)
    common = ["--hosts", str(args.hosts), "--pages", str(args.pages), "--port", str(port)]
    results: dict[str, dict[str, Any]] = {}
    scrapy = ["benchmarks/bench_crawler.py", "--role", "scrapy", *common]
    # Scrapy runs before and after the batched cycle: on a shared machine the load moves
    # within minutes, and the cycle is compared with the mean of the two runs around it.
    runs = (
        ("scrapy (crawl only), before", 0),
        ("cycle, batches of 32", 32),
        ("scrapy (crawl only), after", 0),
        ("cycle, 1 image per request", 1),
    )
    try:
        for name, batch in runs:
            started_load = os.getloadavg()[0]
            if not batch:
                results[name] = measure(scrapy, script=True)
                results[name]["load"] = (started_load + os.getloadavg()[0]) / 2
                continue
            with tempfile.TemporaryDirectory() as tmp:
                fport = free_port()
                function = _start_function(fport, port, Path(tmp))
                try:
                    result = measure(
                        ["benchmarks/bench_node_cycle.py", "--role", "cycle", *common,
                         "--function-url", f"http://127.0.0.1:{fport}", "--batch", str(batch)],
                        script=True,
                    )  # fmt: skip
                finally:
                    result_function_cpu = _stop(function)
                result["function_cpu_s"] = result_function_cpu
                result["load"] = (started_load + os.getloadavg()[0]) / 2
                results[name] = result
    finally:
        for server in servers:
            server.terminate()
    base = sum(r["pages_per_s"] for n, r in results.items() if n.startswith("scrapy")) / 2
    print(f"synthetic web: {args.hosts} hosts x {args.pages} pages, one PNG per page")
    print(f"vs Scrapy: against the mean of its two runs, {base:.0f} pages/s")
    print("| run | load avg | pages | images hashed | wall s | pages/s | vs Scrapy | "
          "node CPU ms/page | function CPU ms/image |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        images = r.get("images", 0)
        fcpu = r.get("function_cpu_s")
        per_image = f"{1000 * fcpu / images:.2f}" if fcpu is not None and images else ""
        print(
            f"| {name} | {r['load']:.1f} | {int(r['pages'])} | {int(images)} | "
            f"{r['wall_s']:.1f} | {r['pages_per_s']:.0f} | {r['pages_per_s'] / base:.2f}x | "
            f"{r['cpu_ms_per_page']:.2f} | {per_image} |"
        )
    for name, r in results.items():
        if r.get("failures"):
            print(f"{name}: images not hashed by code: {r['failures']}")


if __name__ == "__main__":
    main()
