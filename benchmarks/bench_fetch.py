"""The function's fetch (issue 17): CPU per fetch of its own HTTP/1.1 client against httpx.

The same loopback server (bench_crawler's web: a 64 x 48 PNG at /img/N.png, a 404 at
/img/ogN.jpg), the same keep-alive connection reused for every request, requests one after
another. Measured, in one run and in this order:

- httpx: an ``httpx.AsyncClient`` (``trust_env=False``, one keep-alive connection), a streamed
  GET whose body is read in pieces: what the function's fetcher did before issue 17;
- ours: ``worker_function.fetch.Fetcher`` in a batch session, the whole fetch the function
  performs per item (URL validation, SSRF Guard in lab mode, request, capped read, sniff of the
  first bytes; the 404 ends as ``upstream_status``).

CPU is this process's (the server runs in two other processes). Run:

    .venv/bin/python benchmarks/bench_fetch.py              # 3,000 fetches of each kind
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import httpx
from bench_crawler import free_port, start_web

from protocol.lab import LabNetwork
from worker_function.errors import FunctionError
from worker_function.fetch import Fetcher
from worker_function.ssrf import Guard

HOST = "127.0.1.1"


def _url(port: int, kind: str, n: int) -> str:
    return (
        f"http://{HOST}:{port}/img/{n}.png"
        if kind == "image"
        else f"http://{HOST}:{port}/img/og{n}.jpg"
    )


async def _httpx(port: int, kind: str, count: int) -> float:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(trust_env=False, limits=limits) as client:
        await client.get(_url(port, kind, 0))  # connect outside the timing
        started = time.process_time()
        for n in range(count):
            async with client.stream("GET", _url(port, kind, n)) as response:
                async for _piece in response.aiter_raw():
                    pass
        return (time.process_time() - started) / count


async def _ours(port: int, kind: str, count: int) -> float:
    guard = Guard(lab=LabNetwork(allow_ranges=["127.0.0.0/8"], allow_ports=[port]))
    async with Fetcher(guard).session(1) as session:
        fetcher = session.fetcher()
        started = time.process_time()
        for n in range(count):
            with contextlib.suppress(FunctionError):  # the 404: upstream_status, as in a batch
                await fetcher.fetch(_url(port, kind, n))
        return (time.process_time() - started) / count


async def _measure(port: int, count: int) -> list[tuple[str, float, float]]:
    rows = []
    for kind in ("image", "404"):
        await _ours(port, kind, 200)  # warm-up: imports, first connection
        base = await _httpx(port, kind, count)
        ours = await _ours(port, kind, count)
        rows.append((kind, base, ours))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    port = free_port()
    servers = start_web(2, 100, port)
    try:
        rows = asyncio.run(_measure(port, args.count))
    finally:
        for server in servers:
            server.terminate()
    print(f"{args.count} fetches of each kind, one keep-alive connection, loopback")
    print("| fetch | httpx CPU ms/fetch | ours CPU ms/fetch | ours / httpx |")
    print("|---|---|---|---|")
    for kind, base, ours in rows:
        print(f"| {kind} | {1000 * base:.3f} | {1000 * ours:.3f} | {ours / base:.2f}x |")


if __name__ == "__main__":
    main()
