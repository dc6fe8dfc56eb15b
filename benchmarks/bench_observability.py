"""Cost of observability on the function's hot path: metrics and traces on vs off, one run.

    .venv/bin/python benchmarks/bench_observability.py [--requests 300] [--rounds 5]

The function app in process (httpx ASGI transport: no sockets, no network), analysing a benign
generated JPEG (128x96) sent inline as a ``data:`` URI, decoded in-thread. Three apps, measured in
interleaved rounds (order rotated each round) so machine noise hits all of them alike:

- baseline: ``metrics = false``, tracing off (the named baseline);
- metrics: the Prometheus middleware and counters (the default);
- metrics+traces: also FastAPI server spans, scrubbed, into an in-memory exporter.

Also GET /healthz (no decode, same middleware and spans), where a per-request cost shows most.
Reports requests per second (median over rounds) and each configuration's ratio to baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker_function import telemetry
from worker_function.app import create_app
from worker_function.settings import FunctionSettings


def benign_jpeg(seed: int = 5, size: tuple[int, int] = (128, 96)) -> bytes:
    """Small enough for the request's 8192-character URL limit as a data: URI."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def make_apps() -> dict[str, FastAPI]:
    base = {
        "require_auth": False,
        "decode_isolation": "thread",
        "max_concurrent_decodes": 1,
        "rate_limit_per_second": 1e9,  # one caller sends everything: no limit here
        "rate_limit_burst": 1_000_000_000,
    }
    exporter = InMemorySpanExporter()
    return {
        "baseline": create_app(FunctionSettings(**base, metrics=False)),  # type: ignore[arg-type]
        "metrics": create_app(FunctionSettings(**base)),  # type: ignore[arg-type]
        "metrics+traces": create_app(
            FunctionSettings(**base),  # type: ignore[arg-type]
            tracer_provider=telemetry.build_provider(exporter, batch=True),
        ),
    }


async def rate(app: FastAPI, body: bytes | None, requests: int) -> float:
    """Requests per second: POST /v1/analyze with ``body``, or GET /healthz without one."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        headers = {"content-type": "application/json"}
        started = time.perf_counter()
        for _ in range(requests):
            if body is None:
                response = await client.get("/healthz")
            else:
                response = await client.post("/v1/analyze", content=body, headers=headers)
            assert response.status_code == 200, response.text
        return requests / (time.perf_counter() - started)


async def main_async(requests: int, rounds: int) -> dict[str, float]:
    uri = "data:image/jpeg;base64," + base64.b64encode(benign_jpeg()).decode("ascii")
    body = ('{"url": "' + uri + '"}').encode("ascii")
    apps = make_apps()
    for app in apps.values():  # warm up (imports, first decode)
        await rate(app, body, 5)
    samples: dict[str, list[float]] = {}
    names = list(apps)
    for round_ in range(rounds):
        # Rotate the order: no configuration always runs first (or right after another).
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            samples.setdefault(f"analyze {name}", []).append(await rate(apps[name], body, requests))
            # The bare request path (no decode): where a per-request cost would show most.
            samples.setdefault(f"healthz {name}", []).append(
                await rate(apps[name], None, requests * 5)
            )
    return {name: statistics.median(values) for name, values in sorted(samples.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    medians = asyncio.run(main_async(args.requests, args.rounds))
    print(f"{'route and configuration':<24} {'req/s':>8} {'ratio to baseline':>18}")
    for name, value in medians.items():
        baseline = medians[name.split()[0] + " baseline"]
        print(f"{name:<24} {value:8.1f} {value / baseline:18.3f}")


if __name__ == "__main__":
    main()
