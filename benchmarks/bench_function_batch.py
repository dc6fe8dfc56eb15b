"""The function's batched analysis against one request per image, in one run (issue 17).

    .venv/bin/python benchmarks/bench_function_batch.py [--images 1024] [--rounds 3] [--json F]
    .venv/bin/python benchmarks/bench_function_batch.py --web cycle --modes batch --batch 32 \\
        --in-flight 4 --images 2048          # the node cycle's load (bench_node_cycle.py)

A loopback web (our asyncio HTTP server in its own process) serves small generated JPEGs
(libra.demo.imagegen, 160x120, ~3 KB; each URL distinct). With ``--web cycle`` it serves what
benchmarks/bench_node_cycle.py's pages link instead: per page one 64 x 48 PNG
(bench_crawler.png) and one og:image that answers 404, on ``--hosts`` loopback addresses, so
the function's CPU per page here is the cycle's function share alone.
The real `libra function serve` runs in lab mode with production settings otherwise (signed
requests, decode worker processes), and this process plays the node, signing every request:
- single: ``POST /v1/analyze`` per image, 16 requests in flight on kept-alive connections;
- batch: ``POST /v1/analyze:batch`` of ``--batch`` (64) URLs, ``--in-flight`` (2) at once.
Rounds alternate the two modes over fresh URLs. Reported per mode (medians over rounds):
images/s, the function's CPU per image (server + decode workers, from /proc: user + sys) and the
caller's CPU per image (signing, JSON, HTTP). Every answer is checked: all images hashed (and
with ``--web cycle`` every og:image answered ``upstream_status``). "Per image" is per page there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from libra.demo.imagegen import encode, generate_image  # noqa: E402
from protocol.keys import encode_public_key  # noqa: E402
from protocol.request_auth import RequestSigner  # noqa: E402

BATCH = 64
SINGLE_IN_FLIGHT = 16
BATCHES_IN_FLIGHT = 2
DISTINCT_IMAGES = 256
TICKS = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- the web


async def _serve(port: int, ready: str, web: str = "jpeg", hosts: int = 1) -> None:
    if web == "cycle":
        from bench_crawler import png  # the node cycle's pictures

        images = [png(n) for n in range(64)]
    else:
        images = [encode(generate_image(s, 160, 120), "JPEG") for s in range(DISTINCT_IMAGES)]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                # /img/<n>.jpg?<round>: image n of the distinct set, any query; /img/og<n>.jpg
                # (the cycle's og:image) is not found, as on bench_crawler's web.
                name = path.split("/")[-1].split("?")[0]
                if name.startswith("og"):
                    status, body = b"404 Not Found", b"<html>404</html>"
                else:
                    status, body = b"200 OK", images[int(name.split(".")[0]) % len(images)]
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    servers = [
        await asyncio.start_server(handle, ip, port, backlog=1024) for ip in web_ips(web, hosts)
    ]
    Path(ready).write_text("ready")
    await asyncio.gather(*(server.serve_forever() for server in servers))


def web_ips(web: str, hosts: int) -> list[str]:
    """The loopback addresses the web listens on (the cycle's: bench_crawler.host_ip)."""
    return [f"127.0.1.{n + 1}" for n in range(hosts)] if web == "cycle" else ["127.0.0.1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- CPU of a tree


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree_cpu(root: int) -> float:
    """CPU seconds (user + sys) of ``root``, its live descendants and its reaped children."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    ticks = 0
    for pid in members:
        fields = _stat(pid)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == root:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: replaced workers
    return ticks / TICKS


# ----------------------------------------------------------------------------- the caller


def _missing(url: str) -> bool:
    """The cycle web's og:image, which answers 404."""
    return url.rsplit("/", 1)[-1].startswith("og")


def expected(url: str, status: int, code: str | None) -> bool:
    """An image hashed, or (the og:image) answered ``upstream_status``."""
    if _missing(url):
        return code == "upstream_status"
    return status == 200 and code is None


async def run_single(client: httpx.AsyncClient, signer: RequestSigner, urls: list[str]) -> int:
    slots = asyncio.Semaphore(SINGLE_IN_FLIGHT)

    async def one(url: str) -> bool:
        body = json.dumps({"url": url}).encode()
        async with slots:
            headers = signer.headers("POST", "/v1/analyze", body)
            response = await client.post("/v1/analyze", content=body, headers=headers)
        code = None if response.status_code == 200 else response.json()["error"]["code"]
        return expected(url, 200 if code is None else 422, code)

    return sum(await asyncio.gather(*(one(u) for u in urls)))


Mode = Callable[[httpx.AsyncClient, RequestSigner, list[str]], Awaitable[int]]


def batch_mode(size: int, in_flight: int) -> Mode:
    """Batches of ``size`` URLs, ``in_flight`` at once."""

    async def run(client: httpx.AsyncClient, signer: RequestSigner, urls: list[str]) -> int:
        return await run_batch(client, signer, urls, size, in_flight)

    return run


async def run_batch(
    client: httpx.AsyncClient, signer: RequestSigner, urls: list[str], size: int, in_flight: int
) -> int:
    slots = asyncio.Semaphore(in_flight)

    async def one(part: list[str]) -> int:
        body = json.dumps({"items": [{"url": u} for u in part]}).encode()
        async with slots:
            headers = signer.headers("POST", "/v1/analyze:batch", body)
            response = await client.post("/v1/analyze:batch", content=body, headers=headers)
        if response.status_code != 200:
            return 0
        return sum(
            expected(item["url"], 200, (item["error"] or {}).get("code"))
            for item in response.json()["results"]
        )

    parts = [urls[i : i + size] for i in range(0, len(urls), size)]
    return sum(await asyncio.gather(*(one(p) for p in parts)))


def measure(
    mode: Mode,
    function_pid: int,
    base: str,
    signer: RequestSigner,
    urls: list[str],
) -> dict[str, float]:
    async def go() -> int:
        limits = httpx.Limits(max_connections=SINGLE_IN_FLIGHT, max_keepalive_connections=16)
        async with httpx.AsyncClient(
            base_url=base, trust_env=False, timeout=600, limits=limits
        ) as client:
            return await mode(client, signer, urls)

    function_cpu = tree_cpu(function_pid)
    caller_cpu = time.process_time()
    started = time.perf_counter()
    done = asyncio.run(go())
    wall = time.perf_counter() - started
    caller_cpu = time.process_time() - caller_cpu
    function_cpu = tree_cpu(function_pid) - function_cpu
    if done != len(urls):
        raise SystemExit(f"only {done} of {len(urls)} URLs were answered as expected")
    images = sum(not _missing(url) for url in urls)
    return {
        "images_per_s": images / wall,
        "function_cpu_ms_per_image": function_cpu / images * 1000,
        "caller_cpu_ms_per_image": caller_cpu / images * 1000,
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="images per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--web", choices=("jpeg", "cycle"), default="jpeg", help="160x120 JPEGs, or the cycle's"
    )
    parser.add_argument("--hosts", type=int, default=40, help="loopback hosts (--web cycle)")
    parser.add_argument("--batch", type=int, default=BATCH, help="URLs per batch")
    parser.add_argument("--in-flight", type=int, default=BATCHES_IN_FLIGHT, help="batches")
    parser.add_argument("--modes", default="single,batch", help="single, batch or both")
    args = parser.parse_args()
    wanted = set(args.modes.split(","))
    if not wanted or not wanted <= {"single", "batch"}:
        raise SystemExit("--modes: single, batch or single,batch")
    web_port, function_port = free_port(), free_port()
    key = SigningKey.generate()
    signer = RequestSigner("bench", key)
    with tempfile.TemporaryDirectory(prefix="libra-bench-batch-") as tmp:
        ready = Path(tmp) / "ready"
        web = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import asyncio, benchmarks.bench_function_batch as b; "
                f"asyncio.run(b._serve({web_port}, {str(ready)!r}, {args.web!r}, {args.hosts}))",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}"},
        )
        lab = Path(tmp) / "lab.toml"
        lab.write_text(
            f'allow_ranges = ["127.0.0.0/8"]\nallow_ports = [{web_port}]\n'
            '[hosts]\n"img.bench.test" = "127.0.0.1"\n'
        )
        config = Path(tmp) / "function.toml"
        config.write_text(
            "rate_limit_per_second = 1000000.0\nrate_limit_burst = 1000000\n"
            'log_level = "WARNING"\n'
            f'[authorized_keys]\nbench = "{encode_public_key(key.verify_key)}"\n'
        )
        function = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("libra")),
                "function",
                "serve",
                "--lab",
                str(lab),
                "--config",
                str(config),
                "--port",
                str(function_port),
            ],
            cwd=tmp,
        )
        base = f"http://127.0.0.1:{function_port}"
        try:
            deadline = time.monotonic() + 120
            while not ready.exists() or not _healthy(base):
                if time.monotonic() > deadline:
                    raise SystemExit("the web or the function did not start")
                time.sleep(0.2)
            warm = make_urls(args.web, web_port, args.hosts, 128, "warm")
            measure(run_single, function.pid, base, signer, warm)  # start workers, warm caches
            every = {
                "single": run_single,
                f"batch of {args.batch}": batch_mode(args.batch, args.in_flight),
            }
            modes = {name: run for name, run in every.items() if name.split()[0] in wanted}
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
            for round_ in range(args.rounds):
                order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
                for name in order:
                    tag = f"{name[0]}{round_}"
                    urls = make_urls(args.web, web_port, args.hosts, args.images, tag)
                    samples[name].append(measure(modes[name], function.pid, base, signer, urls))
        finally:
            function.terminate()
            web.terminate()
            function.wait(timeout=60)
            web.wait(timeout=60)
    results = {
        name: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for name, runs in samples.items()
    }
    print(
        f"{args.images} images per mode ({args.web} web), {args.rounds} rounds, medians; "
        f"cpus={os.cpu_count()}"
    )
    print(f"{'mode':12} {'images/s':>9} {'function CPU ms/img':>20} {'caller CPU ms/img':>18}")
    for name, row in results.items():
        print(
            f"{name:12} {row['images_per_s']:9.1f} {row['function_cpu_ms_per_image']:20.2f} "
            f"{row['caller_cpu_ms_per_image']:18.2f}"
        )
    if len(results) == 2:
        single, batch = results["single"], results[f"batch of {args.batch}"]
        print(
            f"batch / single: {batch['images_per_s'] / single['images_per_s']:.2f}x images/s, "
            f"{batch['function_cpu_ms_per_image'] / single['function_cpu_ms_per_image']:.2f}x "
            "function CPU per image"
        )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def make_urls(web: str, port: int, hosts: int, count: int, tag: str) -> list[str]:
    """``count`` distinct image URLs; with the cycle's web each is followed by its page's
    og:image (a 404), the pages spread over the hosts as a crawl interleaves them."""
    if web == "jpeg":
        return [f"http://img.bench.test:{port}/img/{n}.jpg?{tag}" for n in range(count)]
    ips = web_ips(web, hosts)
    urls = []
    for n in range(count):
        base = f"http://{ips[n % len(ips)]}:{port}/img"
        urls += [f"{base}/{n}.png?{tag}", f"{base}/og{n}.jpg?{tag}"]
    return urls


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", trust_env=False, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
