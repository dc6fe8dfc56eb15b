"""Redis-frontier benchmark (issue 17): 1, 2 and 4 Redis crawl workers against one SQLite-frontier
crawler process, on the same loopback web in the same run (crawl only, no function).

The web is bench_crawler.py's (``--hosts`` hosts x ``--pages`` pages on 127.0.1.N, two server
processes), the politeness too: robots.txt obeyed, per-host concurrency 1, no delay, 64 requests
in flight per crawler process (``crawl.concurrency``), same-host scope, no sitemaps.

- SQLite: bench_crawler's own role (``Crawler`` on a ``SqliteFrontier``, one process).
- Redis-N: N worker processes (``python -m node.crawl.worker --forever``, as ``libra node
  crawl-worker --forever``) started and waiting first, then one process in the node cycle's role
  (``RedisCrawler`` with no local worker) queues the seeds and reads every event. Its wall time,
  from queuing the seeds to the last event, is the run's.

Wall time is measured inside the timed process, after its imports, for both. CPU is user+sys of
every process of the crawler (os.wait4), web servers excluded; the Redis server's CPU during a
Redis run (INFO cpu, so including any other client of that server) is shown on its own and in
the last column. Redis keys live in DB 15 under a fresh prefix that is deleted afterwards. Run:

    .venv/bin/python benchmarks/bench_redis_frontier.py                     # 100 x 200 pages
    .venv/bin/python benchmarks/bench_redis_frontier.py --hosts 20 --pages 50   # quick look
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
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_crawler as web  # the synthetic web and the SQLite role

ROOT = web.ROOT
REDIS_URL = "redis://127.0.0.1:6379/15"


def write_config(tmp: Path, port: int, prefix: str, total: int, redis_url: str) -> Path:
    (tmp / "lab.toml").write_text(f'allow_ranges = ["127.0.0.0/8"]\nallow_ports = [{port}]\n')
    config = tmp / "node.toml"
    config.write_text(
        'node_id = "bench-redis"\ncountry = "DE"\nlab = "lab.toml"\n'
        f"data_dir = {json.dumps(str(tmp))}\n[crawl]\n"
        f'frontier = "redis"\nredis_url = "{redis_url}"\nredis_prefix = "{prefix}"\n'
        f"max_pages = {total + 1000}\nmax_depth = 100000\nconcurrency = {web.CONCURRENCY}\n"
        "per_host_concurrency = 1\nmin_delay_s = 0.0\nobey_robots = true\nsitemaps = false\n"
        "timeout_s = 30.0\n"
    )
    return config


# ----------------------------------------------------------------------------- consumer role


async def _consume(seeds: list[str], config: Path) -> dict[str, float]:
    import redis.asyncio as aioredis

    from node.config import load_settings
    from node.crawl.crawler import ImageFound, PageFailed, PageFetched
    from node.crawl.frontier.redis_streams import RedisFrontier
    from node.crawl.limits import limits_from
    from node.crawl.worker import RedisCrawler
    from node.net import make_client

    settings = load_settings(config)
    limits = limits_from(settings)
    redis = aioredis.Redis.from_url(settings.crawl.redis_url)
    frontier = RedisFrontier(redis, settings.crawl.redis_prefix, lease_s=settings.crawl.lease_s)
    counts = {"pages": 0, "failed": 0, "images": 0}
    async with make_client(None, timeout=5, user_agent=limits.user_agent) as client:
        crawler = RedisCrawler(frontier, client, limits, local_workers=0, owns_redis=True)
        started = time.perf_counter()
        async for event in crawler.crawl(seeds):
            if isinstance(event, PageFetched):
                counts["pages"] += 1
            elif isinstance(event, PageFailed):
                counts["failed"] += 1
            elif isinstance(event, ImageFound):
                counts["images"] += 1
        return {**counts, "wall_s": time.perf_counter() - started}


# ----------------------------------------------------------------------------- driver


def _wait_for_consumers(redis_url: str, prefix: str, n: int, procs: list[Any]) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a worker exited early ({proc.returncode})")
        try:
            if len(r.xinfo_consumers(f"{prefix}:hosts", "crawlers")) >= n:
                return
        except redis.ResponseError:
            pass  # the group is not created yet
        time.sleep(0.1)
    raise SystemExit("workers did not start within 120 s")


def _redis_cpu(server: Any) -> float:
    info = server.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_redis(
    workers: int, seeds: list[str], port: int, total: int, redis_url: str, common: list[str]
) -> dict[str, Any]:
    import redis

    prefix = f"libra-bench:{uuid.uuid4().hex}"
    server = redis.Redis.from_url(redis_url)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp), port, prefix, total, redis_url)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "node.crawl.worker", "--config", str(config), "--forever"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(workers)
        ]
        try:
            _wait_for_consumers(redis_url, prefix, workers, procs)
            redis_cpu = _redis_cpu(server)
            result = web.measure(
                [__file__, "--role", "consumer", "--config", str(config), *common], script=True
            )
            result["redis_cpu_s"] = _redis_cpu(server) - redis_cpu
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
        worker_cpu, jobs = 0.0, []
        for proc in procs:
            assert proc.stdout is not None
            out = proc.stdout.read()
            _pid, status, usage = os.wait4(proc.pid, 0)
            worker_cpu += usage.ru_utime + usage.ru_stime
            if status == 0 and out.strip():
                jobs.append(json.loads(out.strip().splitlines()[-1])["jobs_done"])
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    result["consumer_cpu_s"] = result["cpu_s"]
    result["cpu_s"] += worker_cpu
    result["cpu_ms_per_page"] = 1000 * result["cpu_s"] / max(1, result["pages"])
    result["jobs_per_worker"] = jobs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4", help="Redis worker counts to run")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole sequence")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [f"http://{web.host_ip(n)}:{args.port}/p0.html" for n in range(args.hosts)]
    total = args.hosts * args.pages
    if args.role == "consumer":
        assert args.config is not None
        print(json.dumps(asyncio.run(_consume(seeds, args.config))))
        return

    port = web.free_port()
    servers = web.start_web(args.hosts, args.pages, port)
    common = ["--hosts", str(args.hosts), "--pages", str(args.pages), "--port", str(port)]
    sqlite_role = ["--role", "ours", "--frontier", "sqlite", *common]
    counts = [int(n) for n in args.workers.split(",")]
    results: list[tuple[str, dict[str, Any]]] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    try:
        web.measure(["--role", "ours", "--frontier", "memory", *common])  # untimed warm-up
        for _ in range(args.rounds):
            results.append(("sqlite, 1 process", web.measure(sqlite_role)))
            for n in counts:
                name = f"redis, {n} worker{'s' if n > 1 else ''}"
                results.append((name, run_redis(n, seeds, port, total, args.redis_url, common)))
    finally:
        for server in servers:
            server.terminate()
    print(f"{started}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"synthetic web: {args.hosts} hosts x {args.pages} pages = {total} pages")
    print(
        f"{'crawler':<22}{'pages':>8}{'wall s':>9}{'pages/s':>10}{'CPU s':>8}"
        f"{'CPU ms/page':>13}{'Redis CPU s':>13}{'+Redis ms/page':>16}"
    )
    for name, r in results:
        redis_cpu = r.get("redis_cpu_s", 0.0)
        print(
            f"{name:<22}{int(r['pages']):>8}{r['wall_s']:>9.1f}{r['pages_per_s']:>10.0f}"
            f"{r['cpu_s']:>8.1f}{r['cpu_ms_per_page']:>13.2f}{redis_cpu:>13.1f}"
            f"{1000 * (r['cpu_s'] + redis_cpu) / max(1, r['pages']):>16.2f}"
            + (f"   jobs per worker {r['jobs_per_worker']}" if "jobs_per_worker" in r else "")
        )
    base: dict[str, Any] | None = None
    for name, r in results:
        if name.startswith("sqlite"):
            base = r
            continue
        assert base is not None
        print(
            f"{name}: {r['pages_per_s'] / base['pages_per_s']:.2f}x SQLite pages/s, "
            f"{r['cpu_ms_per_page'] / base['cpu_ms_per_page']:.2f}x SQLite CPU per page"
        )


if __name__ == "__main__":
    main()
